"""The subnet's long-running neurons: ``python -m neurons.miner`` (and the validator's)."""
