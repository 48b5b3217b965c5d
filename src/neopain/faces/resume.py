"""Resuming ``faces detect``: which images an earlier run with the same settings finished.

``faces.json`` holds the settings; ``faces.jsonl`` one JSON record per finished image, appended
as it finishes, so a run stopped at any point leaves at most a partial last line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neopain.data.files import FileReadError, read_regular_text, regular_file_error
from neopain.data.json_text import parse_json

RECORDS = "faces.jsonl"
SETTINGS = "faces.json"
_MAX_LOG_BYTES = 2**30  # a record is about 500 bytes: 2 million images


def stamp(path: str) -> list[int] | None:
    """Size and modification time of a file (None when missing): a changed image is redone."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def load_records(root: Path, key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Records of an earlier run with the same settings, by image; {} otherwise.

    Raises:
        FileReadError: faces.json or faces.jsonl is there but no regular file (a FIFO would
            block the read, a folder could not be replaced).
    """
    settings = _read_log(root / SETTINGS)
    try:
        same = settings is not None and parse_json(settings) == key
    except ValueError:
        return {}
    text = _read_log(root / RECORDS, read=same)
    lines = text.splitlines() if text is not None else []
    records: dict[str, dict[str, Any]] = {}
    for line in lines:
        try:  # a run stopped mid-write leaves a partial last line: that image is not done
            record = parse_json(line)
            records[record["image"]] = record
        except (ValueError, KeyError, TypeError):
            continue
    return records


def _read_log(path: Path, *, read: bool = True) -> str | None:
    """The text of one of the run's files; None when it is missing, too large or no text, or
    when not ``read`` (it is only checked)."""
    error = regular_file_error(path, what=f"the {path.name} that faces detect writes")
    if error is not None and error.missing:
        return None
    if error is not None:
        raise FileReadError(path, f"{error.reason}; remove it, or write to another --out "
                                  "folder")
    if not read:
        return None
    try:
        return read_regular_text(path, max_bytes=_MAX_LOG_BYTES)
    except FileReadError:
        return None


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
