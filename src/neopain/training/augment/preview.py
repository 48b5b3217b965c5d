"""A picture of augmented copies beside their originals, keypoints coloured by index."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from neopain.data.images import read_image
from neopain.data.manifest import load_manifest
from neopain.plots import show_face


def augment_sheet(manifest: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  examples: int = 4, copies: int = 4) -> Path:
    """Draw ``examples`` originals, each followed by its first ``copies`` augmented copies.

    Args:
        manifest: the manifest ``augment_fold`` wrote (with ``augmented_from`` and ``copy``).
        out: the PNG to write.

    Keypoints keep their colour by index (``neopain.plots.KEYPOINT_COLOURS``): after a flip,
    red is still the image-left eye, which shows that flips re-order the keypoints.

    Raises:
        ImageReadError: an original or a copy that cannot be read.
    """
    augmented = load_manifest(manifest)
    table = augmented.table
    originals = list(dict.fromkeys(table["augmented_from"]))[:examples]
    points = augmented.keypoints()
    fig = Figure(figsize=(1.9 * (copies + 1), 1.9 * len(originals)), layout="constrained")
    axes = fig.subplots(len(originals), copies + 1, squeeze=False)
    for ax_row, original in zip(axes, originals):
        rows = np.flatnonzero(table["augmented_from"].to_numpy() == original)[:copies]
        source = read_image(augmented.root / original)
        first = rows[0]
        show_face(ax_row[0], source,
                  title=f"{table['subject'].iat[first]} {table['label'].iat[first]}: original")
        for ax, row in zip(ax_row[1:], rows):
            show_face(ax, read_image(augmented.image_path(row)),
                      title=f"copy {table['copy'].iat[row]}", keypoints=points[row])
        for ax in ax_row[1 + len(rows):]:
            ax.set_axis_off()
    out = Path(out)
    fig.savefig(out, dpi=90)
    return out
