"""Names of files that batch commands write per manifest row (crops, augmented copies)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path


def safe_name(text: str) -> str:
    """A file or folder name from a subject id or file stem: ASCII letters, digits, ``._-``."""
    name = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in text)
    return name.strip(".") or "_"


def output_stems(images: Sequence[str], subjects: Sequence[str]) -> list[str]:
    """``<subject>/<stem>`` per row; where two would collide, 8 hex digits of a hash of the
    image path are added (compared case-insensitively, for case-insensitive file systems).

    >>> output_stems(["a/x.jpg", "b/x.jpg", "c/y.png"], ["S1", "S1", "S2"])[2]
    'S2/y'
    """
    stems = [f"{safe_name(s)}/{safe_name(Path(i).stem)}" for i, s in zip(images, subjects)]
    counts = Counter(stem.lower() for stem in stems)
    return [stem if counts[stem.lower()] == 1
            else f"{stem}_{hashlib.sha256(image.encode()).hexdigest()[:8]}"
            for stem, image in zip(stems, images)]
