"""Face crops of manifest rows, cut as a model file's crop rule says: for calibration, parity
reports and ``neopain assess manifest.csv``.

Images are read with the package's one reader (``data.images.read_image``), the one training
read them with, so that the pixels are the ones the model was trained and evaluated on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from neopain.data.images import ImageReadError, read_image
from neopain.data.manifest import Manifest
from neopain.errors import NeopainError
from neopain.faces.crop import CropRule


def spread(rows: Sequence[int], count: int) -> list[int]:
    """``count`` rows evenly spaced over ``rows`` (all of them when there are fewer), so that a
    calibration set covers every subject and source instead of the first few."""
    if count >= len(rows):
        return list(rows)
    picks = np.linspace(0, len(rows) - 1, count).round().astype(int)
    return [rows[i] for i in picks]


def manifest_crops(manifest: Manifest, rows: Sequence[int], *,
                   crop: CropRule) -> Iterator[tuple[int, np.ndarray]]:
    """``(row, crop)`` for each row: the image cut around its ``face_box`` by the ``crop`` rule.

    Raises:
        NeopainError: an unreadable image or a missing face box, naming the manifest line.
    """
    boxes = manifest.boxes()
    for row in rows:
        path = manifest.image_path(int(row))
        try:
            image = read_image(path)
        except ImageReadError as error:
            raise ImageReadError(f"manifest line {row + 2}, image {path}", error.reason) from None
        box = None if np.isnan(boxes[row]).any() else boxes[row]
        if box is None and crop.needs_box:
            raise NeopainError(f"manifest line {row + 2}, column 'face_box': is empty, but the "
                               "model was trained on face crops; detect faces first "
                               "(neopain faces detect)")
        try:
            cut = crop.cut(image, box=box)
        except NeopainError as error:
            raise NeopainError(f"manifest line {row + 2}, column 'face_box': {error}") from None
        yield int(row), cut


def labels_of(manifest: Manifest, rows: Sequence[int]) -> np.ndarray:
    """1 for ``pain``, 0 for ``nopain``, -1 for anything else, per row."""
    values = manifest.table["label"].to_numpy()[list(rows)]
    return np.array([1 if v == "pain" else 0 if v == "nopain" else -1 for v in values])
