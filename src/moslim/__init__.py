"""MOSLIM: multi-objective alignment through multi-head reward classification."""

__version__ = "0.1.0"
