"""Errors a user can act on. The CLI prints them without a traceback and exits 1."""


class NeopainError(Exception):
    """Bad input or settings: the message says what is wrong and what is valid."""
