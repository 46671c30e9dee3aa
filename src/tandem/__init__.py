"""Tandem: medication-supported addiction treatment, from detox to outcomes."""

__version__ = "0.1.0"
