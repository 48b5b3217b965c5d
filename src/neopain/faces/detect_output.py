"""``faces detect``'s tables: the manifest of the crops and the report of images left out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from neopain.data.manifest import Manifest
from neopain.faces.detect_worker import DetectJob

REPORT_COLUMNS = ("line", "image", "status", "reason")
ORIGINAL_COLUMNS = ("original_image", "original_face_box", "face_score")
"""Columns the crops manifest adds: where each crop came from and the face's score."""


@dataclass(frozen=True)
class MissingFace:
    """An image left out of the crops manifest: ``status`` is ``no_face`` or ``unreadable``."""

    line: int
    image: str
    status: str
    reason: str


def _relative(path: str | os.PathLike[str], root: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()


def _manifest_row(row: dict[str, str], record: dict[str, Any], *, manifest: Manifest,
                  root: Path) -> dict[str, str]:
    original = _relative(record["image"], root)
    video = row["video"] and _relative(manifest.root / row["video"], root)
    cells = {**row, "video": video, "original_image": original}
    if str(row.get("mask") or "").strip():  # the synthetic cohort's masks, on the originals
        cells["mask"] = _relative(manifest.root / row["mask"], root)
    if record["status"] != "face":  # kept with --keep-missing: the original image, no box
        return {**cells, "image": original, "face_box": "", "keypoints": "", "landmarks": "",
                "original_face_box": "", "face_score": ""}
    return {**cells, "image": record["crop"], "face_box": record["crop_box"],
            "keypoints": record["keypoints"], "landmarks": record["landmarks"],
            "original_face_box": record["box"], "face_score": f"{record['score']:.4f}"}


def crops_table(manifest: Manifest, *, records: Sequence[dict[str, Any]], root: Path,
                keep_missing: bool) -> pd.DataFrame:
    """The crops manifest: a row per face found (``keep_missing``: also per image without
    one, pointing to the original image), in manifest order."""
    kept = [i for i, r in enumerate(records)
            if r["status"] == "face" or (keep_missing and r["status"] == "no_face")]
    extra = [c for c in ORIGINAL_COLUMNS if c not in manifest.table.columns]
    return pd.DataFrame([_manifest_row(manifest.table.iloc[i].to_dict(), records[i],
                                       manifest=manifest, root=root) for i in kept],
                        columns=[*manifest.table.columns, *extra])


def missing_faces(jobs: Sequence[DetectJob], *,
                  records: Sequence[dict[str, Any]]) -> list[MissingFace]:
    """The images without a face or unreadable, in manifest order."""
    return [MissingFace(job.line, job.image, r["status"], r["reason"])
            for job, r in zip(jobs, records) if r["status"] != "face"]


def report_table(missing: Sequence[MissingFace]) -> pd.DataFrame:
    """``no_face.csv``: ``line, image, status, reason`` per image left out."""
    return pd.DataFrame([[str(m.line), m.image, m.status, m.reason] for m in missing],
                        columns=list(REPORT_COLUMNS), dtype=str)
