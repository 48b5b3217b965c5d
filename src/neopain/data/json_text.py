"""JSON from files and cells a user hands in, with its nesting bounded before it is parsed.

``json.loads`` recurses once per nested list or object: a cell of 3,000 ``[`` raises
RecursionError, which no caller expects. ``parse_json`` counts the nesting first (brackets
outside strings) and refuses deeper text as a ``json.JSONDecodeError`` at the bracket too many,
so callers' existing handling of bad JSON (line, column, message) covers it.
"""

from __future__ import annotations

import json
import re
import sys

MAX_DEPTH = 32
"""Nesting allowed by default: far more than any neopain file needs."""



class JSONLimitError(json.JSONDecodeError):
    """JSON refused for a limit (nesting, length, a number's digits), not for its syntax."""


_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)  # strings, brackets


def parse_json(text: str, *, max_depth: int = MAX_DEPTH, max_chars: int | None = None) -> object:
    """``json.loads(text)`` after checking its nesting (and length).

    Args:
        text: the JSON text.
        max_depth: the most lists and objects nested in one another.
        max_chars: the longest text parsed; None: any.

    Raises:
        JSONLimitError: (a ``json.JSONDecodeError``) nested deeper than ``max_depth``, longer than
            ``max_chars``, or a number Python will not convert (over 4,300 digits); the
            message says which.
        json.JSONDecodeError: not JSON.
    """
    if max_chars is not None and len(text) > max_chars:
        raise JSONLimitError(f"longer than {max_chars:,} characters", text, max_chars)
    depth = 0
    for token in _TOKENS.finditer(text):
        char = token.group()[0]
        if char in "[{":
            depth += 1
            if depth > max_depth:
                raise JSONLimitError(f"nested deeper than {max_depth} levels", text,
                                     token.start())
        elif char in "]}":
            depth = max(depth - 1, 0)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError:  # int() refuses numbers of over 4,300 digits
        digits = sys.get_int_max_str_digits()
        raise JSONLimitError(f"a number has more than {digits:,} digits", text, 0) \
            from None
