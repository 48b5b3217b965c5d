"""neopain: objective, explained pain assessment for newborns from facial expressions."""

__version__ = "0.1.0"
