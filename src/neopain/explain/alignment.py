"""Where a model's input lies on the original image, so that maps drawn on the original image
(human perception heatmaps) can be cut as the model saw it.

A manifest row's image is either an original image (the model's input is its face box, or the
whole image) or a face crop written by ``neopain faces detect``, whose manifest keeps
``original_image`` and ``original_face_box``. The crop's ``face_box`` and the original's
``original_face_box`` are the same face, so their corners give the crop's scale and offset on
the original. ``faces detect`` crops are squares scaled evenly; crops rotated with ``--align``
cannot be placed by a box, and are refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neopain.data.files import FileReadError, read_regular_text
from neopain.data.images import ImageReadError, image_size
from neopain.data.json_text import parse_json
from neopain.data.manifest import Manifest, parse_box
from neopain.errors import NeopainError
from neopain.faces.resume import SETTINGS

Box = tuple[float, float, float, float]
CROP_COLUMNS = ("original_image", "original_face_box")
"""The columns a crop manifest needs for its rows to be placed on their original images."""
SCALE_TOLERANCE = 0.02
"""Largest relative difference of a crop's horizontal and vertical scale (an even scaling)."""


@dataclass(frozen=True)
class Placement:
    """The model input's place on the original image.

    Attributes:
        image: the original image's path.
        size: the original image's (width, height).
        box: (x1, y1, x2, y2) of the input on the original's pixels; it may reach past the
            image where a crop was padded.
    """

    image: Path
    size: tuple[int, int]
    box: Box


class PlacementError(NeopainError):
    """A manifest row whose input cannot be placed on its original image."""


def aligned_crops(root: Path) -> bool:
    """Whether the ``faces detect`` run that wrote the crops in ``root`` rotated them."""
    try:
        settings = parse_json(read_regular_text(root / SETTINGS, what="faces detect settings",
                                                    max_bytes=2**20))
    except (FileReadError, ValueError):  # no settings file: crops made some other way
        return False
    return isinstance(settings, dict) and settings.get("align") is True


def _cell(manifest: Manifest, row: int, column: str) -> str:
    return str(manifest.table[column].iat[row]).strip()


def input_placement(manifest: Manifest, row: int, *, input_box: Box,
                    image_shape: tuple[int, ...], aligned: bool | None = None) -> Placement:
    """Where the input cut from a row's image lies on the row's original image.

    Args:
        manifest: the manifest the model's inputs were read from.
        row: the row.
        input_box: (left, top, right, bottom) the input was cut from, in the row image's pixels.
        image_shape: the row image's shape (H, W, ...).
        aligned: whether the manifest's crops were rotated (``aligned_crops(manifest.root)``,
            which reads the ``faces detect`` settings file: pass it when placing many rows);
            None: read it here.

    Raises:
        PlacementError: a crop manifest without ``CROP_COLUMNS``, a row with an empty or
            unreadable cell among them, an original image that cannot be read, or rotated crops.
    """
    height, width = image_shape[:2]
    image = manifest.image_path(row)
    if "original_image" not in manifest.table.columns:  # an original manifest
        return Placement(image, (width, height), tuple(float(v) for v in input_box))
    line = f"manifest in {manifest.root}, line {row + 2}"
    hint = ("valid: a manifest written by `neopain faces detect`, which keeps "
            f"{' and '.join(CROP_COLUMNS)}")
    if "original_face_box" not in manifest.table.columns:
        raise PlacementError(f"manifest in {manifest.root}: has the column 'original_image' but "
                             f"no column 'original_face_box', so its crops cannot be placed on "
                             f"the original images; {hint}")
    cell = _cell(manifest, row, "original_image")
    if not cell:
        raise PlacementError(f"{line}, column 'original_image': is empty; {hint}")
    original = manifest.root / cell
    if os.path.abspath(original) == os.path.abspath(image):  # a row kept without a face
        return Placement(original, (width, height), tuple(float(v) for v in input_box))
    try:
        crop_face = parse_box(_cell(manifest, row, "face_box"))
        original_face = parse_box(_cell(manifest, row, "original_face_box"))
    except ValueError as error:
        raise PlacementError(f"{line}: a face box cannot be read ({error})") from None
    if crop_face is None or original_face is None:
        column = "face_box" if crop_face is None else "original_face_box"
        raise PlacementError(f"{line}, column {column!r}: is empty, so the crop cannot be "
                             f"placed on its original image; {hint}")
    if aligned is None:
        aligned = aligned_crops(manifest.root)
    if aligned:
        raise PlacementError(f"{line}: the crops were rotated (`faces detect --align`), so "
                             "their inputs are no box on the original image; run `faces "
                             "detect` without --align to compare with maps on the originals")
    crop_xy, original_xy = np.reshape(crop_face, (2, 2)), np.reshape(original_face, (2, 2))
    scale = (original_xy[1] - original_xy[0]) / (crop_xy[1] - crop_xy[0])  # original px per crop px
    if abs(scale[0] / scale[1] - 1) > SCALE_TOLERANCE:
        raise PlacementError(f"{line}: face_box and original_face_box are not the same face "
                             f"scaled evenly (x {scale[0]:.3f}, y {scale[1]:.3f} original pixels "
                             "per crop pixel); the crop is rotated or stretched")
    corners = (np.reshape(input_box, (2, 2)) - crop_xy[0]) * scale + original_xy[0]
    try:
        size = image_size(original)
    except ImageReadError as error:
        raise PlacementError(f"{line}, column 'original_image': {error}") from None
    return Placement(original, size,
                     tuple(float(v) for v in corners.ravel()))
