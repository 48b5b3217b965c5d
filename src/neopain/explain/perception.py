"""Agreement of heatmaps with human perception heatmaps: where people looked to judge pain.

The perception table has the published layout: ``file_name`` (the face image's file name),
``heatmap_file_name``, ``persona`` (observer group, e.g. physicians, parents, lay people),
``new_percep_file_name`` (the heatmap's path) and ``new_file_name`` (the image's path); paths
are relative to the dataset root (by default the table's folder); a bare file name is also
looked up in the root's ``Heatmaps/`` or ``Images/`` folder, as the UNIFESP perception dataset
stores them. Heatmaps are grayscale images (or ``.npy`` arrays) on the original face image's
pixels, larger where people looked more.

A perception row is matched to the reference whose original image shares the longest ending
of its path with the row's image (the same file, else e.g. ``ID1/img_1.jpg``); a tie matches
nothing. The human heatmap is then cut where the reference's frame lies on the original image
(``Reference.placement``: for a model, the input's box, through a crop manifest's original
image and box) and resized to the reference.

Metrics, per image and persona (``AGREEMENT_METRICS``):

- ``pearson`` / ``spearman``: correlation of the two maps' pixel values;
- ``ssim``: structural similarity (scikit-image) of the maps scaled to 0–1;
- ``iou``: intersection over union of the top-k% pixels of each map;
- ``overlap``: Schiller et al.'s overlap score, as we read it: both maps scaled to sum 1, the
  sum over pixels of the smaller of the two (histogram intersection; 1 = the same
  distribution of attention, 0 = no pixel in common);
- ``region_spearman``: Spearman correlation of the facial regions ranked by their share of
  each map (``faces.regions``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from scipy import stats
from skimage.metrics import structural_similarity

from neopain.models.preprocess import resize_sample
from neopain.data.files import FileReadError, load_npy
from neopain.data.images import ImageReadError, read_gray
from neopain.data.tables import Problem, TableError, read_table
from neopain.errors import NeopainError
from neopain.explain.alignment import Placement
from neopain.faces.regions import REGIONS, region_shares
from neopain.faces.crop import pixel_box

PERCEPTION_COLUMNS = ("file_name", "heatmap_file_name", "persona", "new_percep_file_name",
                      "new_file_name")
AGREEMENT_METRICS = ("pearson", "spearman", "ssim", "iou", "overlap", "region_spearman")
MAX_MAP_BYTES = 128 * 2**20  # a float32 map of 33 megapixels; a larger .npy is refused
_HINT = f"a perception table has the columns {', '.join(PERCEPTION_COLUMNS)}"
_FOLDERS = {"new_percep_file_name": "Heatmaps", "new_file_name": "Images"}
"""Where the UNIFESP perception dataset keeps the files its table names by bare file name."""
ASPECT_TOLERANCE = 0.01
"""Largest relative difference of a heatmap's aspect ratio from its image's."""


def _posix(cell: str) -> str:
    return PurePosixPath(cell.strip().replace("\\", "/")).as_posix()


def _candidates(root: Path, column: str, cell: str) -> list[Path]:
    """Where a table's path may be: under ``root``; a bare file name also in its folder."""
    relative = _posix(cell)
    found = [root / relative]
    if "/" not in relative:
        found.append(root / _FOLDERS[column] / relative)
    return found


def _located(root: Path, column: str, cell: str) -> Path | None:
    """The first candidate that is there (reading it tells what is wrong with it, if anything)."""
    return next((p for p in _candidates(root, column, cell) if os.path.lexists(p)), None)


def load_perception(path: str | os.PathLike[str], *,
                    root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Read a perception table: one row per image and persona.

    Args:
        path: the table.
        root: the folder its paths start from (the UNIFESP dataset's root, holding ``Images/``
            and ``Heatmaps/``); None: the table's folder.

    Returns:
        Columns ``line`` (in the file), ``persona``, ``image`` (``new_file_name``),
        ``file_name``, ``heatmap`` (absolute path of ``new_percep_file_name``) and
        ``image_path`` (absolute path of the image, which need not exist).

    Raises:
        TableError: missing columns, empty cells, a repeated (image, persona) pair or a heatmap
            file that is not found (naming the paths tried), each named by line and column.
    """
    path = Path(path)
    root = Path(os.path.abspath(path.parent if root is None else root))
    if not os.path.isdir(root):
        raise NeopainError(f"root={str(root)!r} is not a folder; valid: the folder the "
                           "perception table's paths start from")
    table, lines = read_table(path, required_hint=_HINT)
    missing = [c for c in PERCEPTION_COLUMNS if c not in table.columns]
    if missing:
        raise TableError(path, [Problem(None, c, None, f"column missing; {_HINT}")
                                for c in missing])
    problems = [Problem(line, column, None, "is empty; every row needs it")
                for column in ("persona", "new_percep_file_name", "new_file_name")
                for line, value in zip(lines, table[column]) if not value.strip()]
    seen: dict[tuple[str, str], int] = {}
    for line, image, persona in zip(lines, table["new_file_name"], table["persona"]):
        key = (image.strip(), persona.strip())
        if key in seen and all(key):
            problems.append(Problem(line, "persona", persona, f"repeats line {seen[key]} for "
                                                              f"the same image {image!r}"))
        seen.setdefault(key, line)
    heatmaps = [_located(root, "new_percep_file_name", cell) if cell.strip() else None
                for cell in table["new_percep_file_name"]]
    problems += [Problem(line, "new_percep_file_name", cell, "file not found; tried " + ", ".join(
                     str(p) for p in _candidates(root, "new_percep_file_name", cell)))
                 for line, cell, found in zip(lines, table["new_percep_file_name"], heatmaps)
                 if found is None and cell.strip()]
    if problems:
        raise TableError(path, problems)
    images = [_located(root, "new_file_name", cell) or root / _posix(cell)
              for cell in table["new_file_name"]]
    return pd.DataFrame({
        "line": lines,
        "persona": table["persona"].str.strip(),
        "image": [_posix(p) for p in table["new_file_name"]],
        "file_name": table["file_name"].str.strip(),
        "heatmap": [str(p) for p in heatmaps],
        "image_path": [os.path.normpath(p) for p in images],
    })


def read_heatmap(path: str | os.PathLike[str]) -> np.ndarray:
    """A heatmap file (grayscale or colour image, or ``.npy``) as float32 (H, W) scaled to 0–1.

    Raises:
        NeopainError: the file is missing, unreadable, empty or not finite (the message names
            it).
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            heat = load_npy(path, what="a heatmap", max_bytes=MAX_MAP_BYTES).astype(np.float32)
        except FileReadError as error:
            raise NeopainError(f"heatmap {path} cannot be read ({error.reason})") from None
    else:
        try:
            heat = read_gray(path).astype(np.float32)
        except ImageReadError as error:
            raise NeopainError(f"heatmap {path} cannot be read ({error.reason}); valid: a "
                               "grayscale PNG/JPEG or a .npy array") from None
    if heat.ndim != 2 or not heat.size:
        raise NeopainError(f"heatmap {path} has shape {heat.shape}; valid: one (H, W) map of "
                           "at least one pixel")
    if not np.isfinite(heat).all():
        raise NeopainError(f"heatmap {path} holds NaN or infinite values; valid: finite "
                           "values")
    peak = float(heat.max())
    return heat / peak if peak > 0 else heat


def top_mask(heatmap: np.ndarray, share: float) -> np.ndarray:
    """The ``share`` of pixels with the largest values (ties broken by position)."""
    flat = np.asarray(heatmap, dtype=np.float64).ravel()
    count = min(max(int(round(share * flat.size)), 1), flat.size)
    mask = np.zeros(flat.size, bool)
    mask[np.argpartition(-flat, count - 1)[:count]] = True
    return mask.reshape(np.shape(heatmap))


def overlap_score(a: np.ndarray, b: np.ndarray) -> float:
    """Histogram intersection of two non-negative maps scaled to sum 1 (NaN if one is empty)."""
    a = np.clip(np.asarray(a, dtype=np.float64), 0, None)
    b = np.clip(np.asarray(b, dtype=np.float64), 0, None)
    if a.sum() <= 0 or b.sum() <= 0:
        return math.nan
    return float(np.minimum(a / a.sum(), b / b.sum()).sum())


def _correlation(kind: Callable, a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan  # undefined for a constant map
    return float(kind(a, b)[0])


def agreement(heatmap: np.ndarray, reference: np.ndarray, *, top_k: float = 0.1,
              regions: np.ndarray | None = None) -> dict[str, float]:
    """Every ``AGREEMENT_METRICS`` value between two maps of the same shape.

    Args:
        heatmap, reference: (H, W) maps; negative values count as 0.
        top_k: share of pixels in the top masks of ``iou``.
        regions: region labels (``regions.region_map``) for ``region_spearman``; NaN without.

    Raises:
        NeopainError: shapes differ, or ``top_k`` is not in (0, 1).
    """
    a = np.clip(np.asarray(heatmap, dtype=np.float64), 0, None)
    b = np.clip(np.asarray(reference, dtype=np.float64), 0, None)
    if a.shape != b.shape or a.ndim != 2:
        raise NeopainError(f"heatmaps of shapes {a.shape} and {b.shape} cannot be compared; "
                           "valid: two (H, W) maps of the same size")
    if not 0 < top_k < 1:
        raise NeopainError(f"top_k={top_k!r} is not valid; valid: a share in (0, 1)")
    scaled = [m / m.max() if m.max() > 0 else m for m in (a, b)]
    top_a, top_b = top_mask(a, top_k), top_mask(b, top_k)
    result = {
        "pearson": _correlation(stats.pearsonr, a.ravel(), b.ravel()),
        "spearman": _correlation(stats.spearmanr, a.ravel(), b.ravel()),
        "ssim": float(structural_similarity(*scaled, data_range=1.0))
        if min(a.shape) >= 7 else math.nan,
        "iou": float((top_a & top_b).sum() / (top_a | top_b).sum()),
        "overlap": overlap_score(a, b),
        "region_spearman": math.nan,
    }
    if regions is not None:
        share_a, share_b = region_shares(a, regions), region_shares(b, regions)
        ranks = np.array([[share_a[r], share_b[r]] for r in REGIONS])
        if np.isfinite(ranks).all():
            result["region_spearman"] = _correlation(stats.spearmanr, ranks[:, 0], ranks[:, 1])
    return result


@dataclass(frozen=True)
class Reference:
    """What a persona's heatmap is compared with, for one image.

    Attributes:
        heatmap: (H, W): a model's heatmap, or a ground-truth mask.
        group: the class the comparison is aggregated under (predicted class, or label).
        crop_box: [x1, y1, x2, y2] of the image the reference's frame was cropped from (the
            face box of a ``crop_to_face`` model, cut as ``FaceDataset`` cuts it); None: the
            reference is on the whole image. Not used with ``placement``.
        regions: region labels on the reference's frame, for ``region_spearman``.
        placement: where the reference's frame lies on its original image, which perception
            rows are matched to; None: matched by the reference's key, a manifest path.
    """

    heatmap: np.ndarray
    group: str
    crop_box: tuple[float, float, float, float] | None = None
    regions: np.ndarray | None = None
    placement: Placement | None = None


def into_frame(heatmap: np.ndarray, *, shape: tuple[int, int],
               crop_box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """A whole-image heatmap cropped as ``FaceDataset`` crops faces and resized to ``shape``."""
    if crop_box is not None:
        x1, y1, x2, y2 = pixel_box(crop_box, image_shape=heatmap.shape)
        heatmap = heatmap[y1:y2, x1:x2]
    return resize_sample(np.ascontiguousarray(heatmap, dtype=np.float32), None,
                         size=tuple(shape))[0]


MAX_PLACEMENT_SPAN = 4  # a padded face crop reaches a little past its image, never this far


def into_placement(heatmap: np.ndarray, placement: Placement, *, shape: tuple[int, int],
                   name: str | os.PathLike[str]) -> np.ndarray:
    """A heatmap on an original image cut where ``placement`` lies (to the nearest pixel, zero
    where it reaches past the image) and resized to ``shape``.

    A heatmap of another size than the image is scaled to it first.

    Raises:
        NeopainError: the heatmap (called ``name``) and the image differ in aspect ratio, or
            the input with the image spans more than ``MAX_PLACEMENT_SPAN`` times the image's
            side (the padding would not fit in memory).
    """
    height, width = heatmap.shape
    image_width, image_height = placement.size
    if abs((width / height) / (image_width / image_height) - 1) > ASPECT_TOLERANCE:
        raise NeopainError(f"heatmap {name} is {width}×{height} pixels but its image "
                           f"{placement.image} is {image_width}×{image_height}; valid: a heatmap "
                           "drawn on the whole original image")
    scale = np.array([width / image_width, height / image_height] * 2)
    box = np.asarray(placement.box, dtype=np.float64)
    spans = (max(box[2], image_width) - min(box[0], 0), max(box[3], image_height) - min(box[1], 0))
    if not np.isfinite(box).all() or spans[0] > MAX_PLACEMENT_SPAN * image_width or \
            spans[1] > MAX_PLACEMENT_SPAN * image_height:
        raise NeopainError(f"heatmap {name}: the model's input {placement.box} reaches far past "
                           f"its image {placement.image} ({image_width}×{image_height}); valid: "
                           f"an input that spans, with the image, at most {MAX_PLACEMENT_SPAN}× "
                           "the image's width and height")
    x1, y1, x2, y2 = (int(v) for v in np.round(box * scale))
    if x2 <= x1 or y2 <= y1:
        raise NeopainError(f"heatmap {name}: the model's input {placement.box} covers no pixel "
                           f"of {placement.image}")
    pad = ((max(-y1, 0), max(y2 - height, 0)), (max(-x1, 0), max(x2 - width, 0)))
    padded = np.pad(np.asarray(heatmap, dtype=np.float32), pad)  # a padded crop is black there
    cut = padded[y1 + pad[0][0]:y2 + pad[0][0], x1 + pad[1][0]:x2 + pad[1][0]]
    return resize_sample(np.ascontiguousarray(cut), None, size=tuple(shape))[0]


def _source(key: str, reference: Reference) -> tuple[str, ...]:
    path = key if reference.placement is None else os.path.normpath(reference.placement.image)
    return PurePosixPath(Path(path).as_posix()).parts


def match_references(perception: pd.DataFrame,
                     references: Mapping[str, Reference]) -> list[str | None]:
    """The reference key of each perception row: the reference whose original image (or key)
    shares the longest ending of its path with the row's ``image_path``; a tie matches none.

    Matching is mutual: a reference that several distinct images match (file names repeat
    across subjects) goes only to the image sharing the strictly longest ending with it; the
    others match none rather than another subject's heatmap.
    """
    by_name: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for key, reference in references.items():
        parts = _source(key, reference)
        by_name.setdefault(parts[-1], []).append((key, parts))
    best_of: dict[str, tuple[str, int] | None] = {}
    for image in dict.fromkeys(perception["image_path"]):
        parts = PurePosixPath(Path(image).as_posix()).parts
        shared = {}
        for key, candidate in by_name.get(parts[-1], []):
            common = 0
            while common < min(len(parts), len(candidate)) and \
                    parts[-1 - common] == candidate[-1 - common]:
                common += 1
            shared[key] = common
        best = max(shared.values(), default=0)
        winners = [key for key, common in shared.items() if common == best]
        best_of[image] = (winners[0], best) if len(winners) == 1 else None
    claims: dict[str, list[int]] = {}
    for match in best_of.values():
        if match is not None:
            claims.setdefault(match[0], []).append(match[1])
    keys: dict[str, str | None] = {}
    for image, match in best_of.items():
        if match is None:
            keys[image] = None
            continue
        key, common = match
        rivals = claims[key]
        keys[image] = key if common == max(rivals) and rivals.count(common) == 1 else None
    return [keys[image] for image in perception["image_path"]]


def compare_perception(perception: pd.DataFrame, references: Mapping[str, Reference], *,
                       top_k: float = 0.1,
                       on_progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Agreement of every persona's heatmap with the reference of its image.

    Rows whose image has no reference are left out (the caller reports how many).

    Returns:
        One row per compared (image, persona): ``image``, ``persona``, ``group`` and the
        ``AGREEMENT_METRICS``.

    Raises:
        NeopainError: a heatmap file that is missing or unreadable.
    """
    keys = match_references(perception, references)
    todo = [(row, key) for row, key in zip(perception.itertuples(index=False), keys)
            if key is not None]
    records = []
    for done, (row, key) in enumerate(todo, start=1):
        reference = references[key]
        heatmap = read_heatmap(row.heatmap)
        if reference.placement is None:
            human = into_frame(heatmap, shape=reference.heatmap.shape,
                               crop_box=reference.crop_box)
        else:
            human = into_placement(heatmap, reference.placement, name=row.heatmap,
                                   shape=reference.heatmap.shape)
        records.append({"image": key, "persona": row.persona, "group": reference.group,
                        **agreement(reference.heatmap, human, top_k=top_k,
                                    regions=reference.regions)})
        if on_progress is not None:
            on_progress(done, len(todo))
    return pd.DataFrame(records, columns=["image", "persona", "group", *AGREEMENT_METRICS])


def summarize_agreement(table: pd.DataFrame, *, by: tuple[str, ...] = ("persona",)
                        ) -> pd.DataFrame:
    """Mean and standard deviation of each metric per group, with ``images`` compared.

    Columns ``<metric>_mean`` and ``<metric>_std`` (NaN values left out); personas are
    ranked best first by their mean rank over the metrics (``rank`` column, 1 = best).
    """
    grouped = table.groupby(list(by), sort=True)
    summary = grouped[list(AGREEMENT_METRICS)].agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    summary.insert(0, "images", grouped.size())
    means = summary[[f"{m}_mean" for m in AGREEMENT_METRICS]]
    if by == ("persona",):
        summary["rank"] = means.rank(ascending=False).mean(axis=1).rank(method="min").astype(int)
        summary = summary.sort_values(["rank", "images"], ascending=[True, False])
    return summary
