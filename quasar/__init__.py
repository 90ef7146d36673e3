"""QUASAR subnet: shared library for miners, validators and the Validator API."""

__version__ = "0.1.0"
