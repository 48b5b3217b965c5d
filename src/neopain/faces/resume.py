"""Resuming ``faces detect``: which images an earlier run with the same settings finished.

``faces.json`` holds the settings; ``faces.jsonl`` one JSON record per finished image, appended
as it finishes, so a run stopped at any point leaves at most a partial last line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neopain.data.json_text import parse_json

RECORDS = "faces.jsonl"
SETTINGS = "faces.json"


def stamp(path: str) -> list[int] | None:
    """Size and modification time of a file (None when missing): a changed image is redone."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def load_records(root: Path, key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Records of an earlier run with the same settings, by image; {} otherwise."""
    try:
        same = parse_json((root / SETTINGS).read_text(encoding="utf-8")) == key
        lines = (root / RECORDS).read_text(encoding="utf-8").splitlines() if same else []
    except (OSError, ValueError):
        return {}
    records: dict[str, dict[str, Any]] = {}
    for line in lines:
        try:  # a run stopped mid-write leaves a partial last line: that image is not done
            record = parse_json(line)
            records[record["image"]] = record
        except (ValueError, KeyError, TypeError):
            continue
    return records


FACE_KEYS = ("score", "box", "crop_box", "keypoints", "landmarks")


def is_done(record: dict[str, Any] | None, *, source: str, prior_cells: Sequence[str], crop: str,
            root: Path) -> bool:
    """Whether an earlier record still holds for this row (an edited log counts as not done)."""
    if not isinstance(record, dict) or record.get("stamp") in (None, []):
        return False
    if (record["stamp"] != stamp(source) or record.get("prior") != list(prior_cells)
            or record.get("crop") != crop):
        return False
    if record.get("status") in ("no_face", "unreadable"):
        return isinstance(record.get("reason"), str)
    return (record.get("status") == "face" and all(k in record for k in FACE_KEYS)
            and (root / crop).is_file()
            and (not record["landmarks"] or (root / record["landmarks"]).is_file()))
