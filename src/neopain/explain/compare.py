"""What persona heatmaps are compared with: a model's explanations, or ground-truth action masks.

``attribution_references`` reads a folder written by ``explain_images`` (``neopain explain
run``): the heatmaps of the predicted class for one method, with where the model's input lies
on the original image (``explain.alignment``: through a crop manifest's original image and box)
and their facial regions. ``mask_references`` reads a manifest whose ``mask`` column holds bit
masks (the synthetic cohort): the actions' ground truth on the whole image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neopain.data.files import FileReadError, load_npy
from neopain.data.json_text import parse_json
from neopain.data.manifest import load_manifest, parse_box
from neopain.data.tables import Problem, TableError, read_table
from neopain.errors import NeopainError
from neopain.explain.alignment import Placement
from neopain.explain.localization import (
    CROP_MASKS, mask_in_input, masks_off_images, read_action_mask,
)
from neopain.explain.perception import MAX_MAP_BYTES, Reference
from neopain.faces.regions import region_map

_USED_COLUMNS = ("image", "method", "target", "pred", "heatmap", "regions", "original_image",
                 "original_size", "original_box", "placement_problem")


def _placement(folder: Path, row) -> Placement:
    """The row's placement on its original image (ValueError: a cell that cannot be read)."""
    size = parse_json(row.original_size)
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(v, int) and v > 0 for v in size)):
        raise ValueError(f"original_size {row.original_size!r} is not [width, height]")
    box = parse_box(row.original_box)
    if box is None:
        raise ValueError("original_box is empty")
    return Placement(folder / row.original_image, (size[0], size[1]), box)


def attribution_references(folder: str | os.PathLike[str], *, method: str | None = None
                           ) -> tuple[dict[str, Reference], str]:
    """The predicted-class heatmaps of one method in an explanations folder, by image.

    Args:
        folder: written by ``neopain explain run`` (holds explanations.csv).
        method: which method's heatmaps; None: the only one there.

    Returns:
        (image → reference, the method used).

    Raises:
        TableError: explanations.csv is no readable table or lacks a column it needs (a
            folder written before heatmaps were placed on the original images).
        NeopainError: no explanations.csv, several methods and none chosen, an unknown method,
            no heatmap of the predicted class, images that cannot be placed on their original
            images (the message says why: e.g. a crop manifest without original_face_box).
    """
    folder = Path(folder)
    file = folder / "explanations.csv"
    if not os.path.lexists(file):
        raise NeopainError(f"{file}: file not found; give the --out folder of "
                           "`neopain explain run`")
    hint = f"explanations.csv needs the columns {', '.join(_USED_COLUMNS)}"
    table, _ = read_table(file, required_hint=hint, what="an explanations.csv file")
    if missing := [name for name in _USED_COLUMNS if name not in table.columns]:
        raise TableError(file, [Problem(None, name, None, f"column missing; {hint}; run "
                                        "`neopain explain run` again") for name in missing])
    methods = list(dict.fromkeys(table["method"]))
    if method is None:
        if len(methods) != 1:
            raise NeopainError(f"{file} holds the methods {', '.join(methods)}; choose one "
                               "with --method")
        method = methods[0]
    if method not in methods:
        raise NeopainError(f"method={method!r} is not in {file}; valid: {', '.join(methods)}")
    chosen = table[(table["method"] == method) & (table["target"] == table["pred"])]
    if chosen.empty:
        raise NeopainError(f"{file} has no {method} heatmap of a predicted class; run "
                           "`neopain explain run` with --target predicted or both")
    unplaced = chosen[chosen["placement_problem"].str.strip() != ""]
    if not unplaced.empty:
        first = unplaced.iloc[0]
        raise NeopainError(f"{file}: {len(unplaced)} of {len(chosen)} images cannot be placed on "
                           f"their original images, so perception heatmaps cannot be cut as the "
                           f"model saw them; image {first['image']!r}: "
                           f"{first['placement_problem']}")
    references = {}
    for row in chosen.itertuples(index=False):
        try:
            placement = _placement(folder, row)
            heatmap = load_npy(folder / row.heatmap, what="a heatmap", max_bytes=MAX_MAP_BYTES)
            regions = (load_npy(folder / row.regions, what="a region map",
                                max_bytes=MAX_MAP_BYTES) if row.regions else None)
        except (FileReadError, ValueError) as error:  # a broken or edited explain run folder
            raise NeopainError(f"{file}, image {row.image!r}: {error}; run `neopain explain "
                               "run` again") from None
        references[row.image] = Reference(heatmap=heatmap, group=row.pred, regions=regions,
                                          placement=placement)
    return references, method


def mask_references(manifest: str | os.PathLike[str], *, max_side: int = 160
                    ) -> tuple[dict[str, Reference], int]:
    """Ground-truth action masks of a manifest's ``mask`` column, by image.

    Masks are shrunk so that their longer side is at most ``max_side`` (the metrics do not need
    full resolution); images without any action are left out (nothing to look at).

    Returns:
        (image → reference grouped by the row's label, how many rows were left out).

    Raises:
        TableError: no ``mask`` column.
        NeopainError: a mask file that is missing or unreadable.
    """
    data = load_manifest(manifest)
    table = data.table
    if masks_off_images(table):
        raise NeopainError(f"{manifest}: {CROP_MASKS} (--masks)")
    if "mask" not in table.columns:
        raise TableError(Path(manifest), [Problem(None, "mask", None, "column missing; "
                                                  "ground-truth masks come from `neopain synth`")])
    keypoints = data.keypoints()
    references: dict[str, Reference] = {}
    left_out = 0
    for row, (image, label, cell) in enumerate(zip(table["image"], table["label"],
                                                   table["mask"])):
        if not cell.strip():
            left_out += 1
            continue
        mask = read_action_mask(data.root / cell)
        scale = min(1.0, max_side / max(mask.shape))
        size = (max(int(round(mask.shape[0] * scale)), 1),
                max(int(round(mask.shape[1] * scale)), 1))
        small = mask_in_input(mask, size=size)
        if not small.any():
            left_out += 1
            continue
        points = keypoints[row]
        ratio = np.array([size[1] / mask.shape[1], size[0] / mask.shape[0]])
        regions = (None if np.isnan(points).any()
                   else region_map(size, keypoints=(points + 0.5) * ratio - 0.5))
        height, width = mask.shape
        whole = Placement(data.image_path(row), (width, height),
                          (0.0, 0.0, float(width), float(height)))
        references[image] = Reference(small.astype(np.float32), label, regions=regions,
                                      placement=whole)
    return references, left_out
