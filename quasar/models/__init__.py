"""Models the project builds itself (the tiny test model); no download needed."""
