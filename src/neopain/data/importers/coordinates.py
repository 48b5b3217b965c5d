"""Face boxes and keypoints written as text by other tools, re-written as manifest cells.

Accepted: JSON or Python lists and tuples (``[1, 2]``, ``(1, 2)``), numbers separated by commas
or spaces (numpy's printout ``[[ 1.  2.]\\n [ 3.  4.]]``), ``np.float64(1.5)`` scalars as numpy 2
prints them, and an ``array(...)`` wrapper. A cell that is empty, ``[]``, ``None`` or ``nan``
means "no box" / "no keypoints". Everything else is rejected with the reason.

Hand-written rather than ``ast.literal_eval``: that rejects numpy's space-separated printout
and accepts far more than coordinates (strings, dicts, sets).
"""

from __future__ import annotations

import re

import numpy as np

from neopain.data.manifest import N_KEYPOINTS, format_box, format_keypoints

BOX_FORM = ("[x1, y1, x2, y2] with x2 > x1 and y2 > y1 (a list or tuple; commas or spaces "
            "between numbers)")
KEYPOINTS_FORM = (f"{N_KEYPOINTS} [x, y] pairs: left eye, right eye, nose, left and right mouth "
                  "corner, e.g. [[x, y], ...] or [(x, y), ...] (commas or spaces between numbers)")

_EMPTY = {"", "[]", "()", "none", "nan"}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TOKEN = re.compile(
    rf"(?P<space>\s*)(?:(?P<open>[\[(])|(?P<close>[\])])|(?P<comma>,)|(?P<number>{_NUMBER}))"
)
_NUMPY_SCALAR = re.compile(rf"\b(?:np|numpy)\.[a-z]+\d*\(\s*({_NUMBER})\s*\)")
_ARRAY = re.compile(r"\s*(?:np\.|numpy\.)?array\((.*?)(?:,\s*dtype=[\w.]+)?\)\s*", re.DOTALL)
_CLOSING = {"[": "]", "(": ")"}
MAX_DEPTH = 4
"""Lists nested in one another at most (boxes nest 1, keypoints 2)."""


def is_empty_coordinates(text: str) -> bool:
    """Whether a cell means "none": empty, ``[]``, ``()``, ``None`` or ``nan``."""
    return text.strip().lower() in _EMPTY


def parse_nested(text: str) -> list | float:
    """Nested lists of floats from coordinate text (see the module docstring for the forms).

    >>> parse_nested("[[ 1.  2.]\\n [ 3.  4.]]")
    [[1.0, 2.0], [3.0, 4.0]]

    Raises:
        ValueError: what is wrong (unexpected text, unmatched brackets, a misplaced comma,
            lists nested deeper than ``MAX_DEPTH``).
    """
    cleaned = _NUMPY_SCALAR.sub(r"\1", text)
    if (wrapped := _ARRAY.fullmatch(cleaned)) is not None:
        cleaned = wrapped.group(1)
    top: list = []
    stack: list[tuple[str, list]] = [("", top)]
    previous, pos, end = "", 0, len(cleaned.rstrip())
    while pos < end:
        token = _TOKEN.match(cleaned, pos)
        if token is None:
            raise ValueError(f"unexpected text {cleaned[pos:pos + 12].strip()!r}")
        pos, kind = token.end(), str(token.lastgroup)
        closing, items = stack[-1]
        if kind in ("open", "number") and previous in ("number", "close") and not token["space"]:
            raise ValueError("numbers must be separated by a comma or a space")
        if kind == "open":
            if len(stack) > MAX_DEPTH:
                raise ValueError(f"lists nested deeper than {MAX_DEPTH} levels")
            items.append([])
            stack.append((_CLOSING[token["open"]], items[-1]))
        elif kind == "close":
            if token["close"] != closing:
                raise ValueError("brackets do not match")
            stack.pop()
        elif kind == "comma" and previous in ("", "open", "comma"):
            raise ValueError("misplaced comma")
        elif kind == "number":
            items.append(float(token["number"]))
        previous = kind
    if len(stack) > 1:
        raise ValueError("a bracket is not closed")
    return top[0] if len(top) == 1 else top


def _array(text: str) -> np.ndarray:
    try:
        values = np.asarray(parse_nested(text), dtype=float)
    except ValueError as error:
        if "inhomogeneous" in str(error) or "sequence" in str(error):
            raise ValueError("lists of different lengths") from None
        raise
    if not np.isfinite(values).all():
        raise ValueError("numbers must be finite")
    return values


def box_cell(text: str) -> str:
    """A face box cell in manifest form (``format_box``); "" when the text means none.

    Raises:
        ValueError: the reason the text is not 4 numbers with x2 > x1 and y2 > y1.
    """
    if is_empty_coordinates(text):
        return ""
    values = _array(text)
    if values.shape != (4,):
        raise ValueError(f"expected 4 numbers in one list, got shape {values.shape}")
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise ValueError("x2 must be greater than x1 and y2 greater than y1")
    return format_box(values)


def keypoints_cell(text: str) -> str:
    """A keypoints cell in manifest form (``format_keypoints``); "" when the text means none.

    A flat list of 10 numbers is refused: it may be x1, y1, x2, y2, ... or x1..x5, y1..y5.

    Raises:
        ValueError: the reason the text is not 5 ``[x, y]`` pairs.
    """
    if is_empty_coordinates(text):
        return ""
    values = _array(text)
    if values.shape == (2 * N_KEYPOINTS,):
        raise ValueError(f"got {2 * N_KEYPOINTS} numbers in one flat list, which may mean "
                         "x1, y1, x2, ... or x1..x5, y1..y5; write them as pairs")
    if values.shape != (N_KEYPOINTS, 2):
        raise ValueError(f"expected {N_KEYPOINTS} pairs, got shape {values.shape}")
    return format_keypoints(values)
