"""What the dashboard's page queries share."""

from __future__ import annotations


class NotFound(Exception):
    """The page asked for does not exist (unknown round or hotkey); the message says what was asked."""
