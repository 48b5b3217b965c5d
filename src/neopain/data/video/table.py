"""The videos table: one row per observation window of a video, every bad row reported."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from neopain.data.files import regular_file_error
from neopain.data.manifest import LABELS, SCALES
from neopain.data.tables import Problem, TableError, read_table
from neopain.data.video.policies import FramePolicy

TABLE_COLUMNS = ("video", "subject", "score", "scale", "label", "source", "start_s", "end_s")
_NOT_CARRIED = ("image", "time_s", "face_box", "keypoints", "landmarks")  # belong to one frame


class VideoTableError(TableError):
    """A videos table that cannot be used; ``problems`` lists everything wrong with it."""


@dataclass(frozen=True)
class Window:
    """One valid row of a videos table: the video's frames from ``start_s`` to ``end_s``."""

    line: int
    video: Path  # absolute
    video_text: str  # as written in the table
    subject: str
    score: float | None
    scale: str
    label: str
    source: str
    start_s: float
    end_s: float  # math.inf: to the end of the video
    extra: dict[str, str] = field(default_factory=dict)
    rate: float = 1.0


def _number(text: str) -> float | None:
    """A cell as a finite number; None for an empty cell; ValueError otherwise."""
    if not text.strip():
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def read_videos_table(path: str | os.PathLike[str], *, policy: FramePolicy) -> list[Window]:
    """Read and check a videos table; every bad row is reported at once.

    Raises:
        VideoTableError: missing columns, bad scores for ``policy``, bad windows (end <= start,
            overlapping windows of one video), missing video files, unusable subject ids.
    """
    path = Path(path)
    required = ["video", "subject"] + (["score"] if policy.scale else [])
    hint = f"a videos table starts with a header naming at least: {', '.join(required)}"
    table, lines = read_table(path, required_hint=hint, what="a videos table CSV file")
    root = path.absolute().parent
    problems = [Problem(None, name, None, f"required column is missing; required: "
                        f"{', '.join(required)}") for name in required if name not in table]
    problems += [Problem(None, name, None, "describes one frame, not a video; remove the column "
                         "(frames get it later)") for name in _NOT_CARRIED if name in table]
    if problems:
        raise VideoTableError(path, problems)
    table = table.reindex(columns=[*TABLE_COLUMNS, *table.columns.difference(TABLE_COLUMNS,
                                                                               sort=False)])
    table = table.fillna("")
    extra_columns = [name for name in table.columns if name not in TABLE_COLUMNS]
    windows: list[Window] = []
    spans: list[tuple[Path, float, float, int]] = []  # rows whose video and window are usable
    for line, row in zip(lines, table.to_dict("records")):
        row = {key: value.strip() for key, value in row.items()}
        found = [Problem(line, column, row[column] or None, message)
                 for column, message in _row_problems(row, root=root, policy=policy)]
        problems += found
        if {"video", "start_s", "end_s"} & {p.column for p in found}:
            continue
        start, end = _number(row["start_s"]) or 0.0, _number(row["end_s"])
        video = (root / row["video"]).resolve()
        spans.append((video, start, math.inf if end is None else end, line))
        if found:
            continue
        score = _number(row["score"])
        windows.append(Window(
            line=line, video=video, video_text=row["video"], subject=row["subject"],
            score=score, scale=row["scale"] or (policy.scale or ""),
            label=row["label"] or policy.label(score) or "", source=row["source"],
            start_s=start, end_s=spans[-1][2], extra={name: row[name] for name in extra_columns},
            rate=policy.rate(score)))
    problems += _overlaps(spans)
    if problems:
        raise VideoTableError(path, sorted(problems, key=lambda p: p.line or 0))
    return windows


def _row_problems(row: dict[str, str], *, root: Path, policy: FramePolicy
                  ) -> Iterator[tuple[str, str]]:
    """(column, message) for each bad cell of one videos table row."""
    video = row["video"]
    if not video:
        yield "video", "is empty; every row needs the path of its video"
    elif (error := regular_file_error(root / video, what="a video file")) is not None:
        # os.stat, not Path.exists: a name too long for the file system raised OSError
        yield "video", (error.reason + "; relative paths start at the videos table's folder"
                        if error.missing else error.reason)
    subject = row["subject"]
    if not subject:
        yield "subject", "is empty; every row needs a subject id (one id per infant)"
    elif any(c in subject for c in "/\\\0") or subject in (".", ".."):
        yield "subject", "cannot be a folder name (frames go to frames/<subject>/); drop / and \\"
    try:
        score = _number(row["score"])
    except ValueError:
        yield "score", "is not a number; valid: " + ("a number >= 0" if policy.scale is None else
                                                      f"0 to {policy.max_score:g}")
    else:
        if (message := policy.score_problem(score)) is not None:
            yield "score", message
        elif not row["label"] and policy.label(score) is None:
            yield "label", (f"is empty and the {policy.name} policy has no pain threshold "
                            f"(pain_from) to label this row; valid: {', '.join(LABELS)}")
    if row["label"] and row["label"] not in LABELS:
        yield "label", f"is not a valid label; valid: {', '.join(LABELS)}"
    scale = row["scale"]
    if scale and policy.scale and scale != policy.scale:
        yield "scale", (f"does not match the {policy.name} policy, which reads {policy.scale} "
                        f"scores; valid: {policy.scale} (or empty)")
    elif scale and scale not in SCALES:
        yield "scale", f"is not a valid scale; valid: {', '.join(SCALES)}"
    times = {}
    for column in ("start_s", "end_s"):
        try:
            times[column] = _number(row[column])
            if (times[column] or 0) < 0:
                raise ValueError(row[column])
        except ValueError:
            yield column, "is not a valid time in seconds; valid: a number >= 0 (empty: " + (
                "from the start)" if column == "start_s" else "to the end)")
    start, end = times.get("start_s"), times.get("end_s")
    if end is not None and "start_s" in times and end <= (start or 0):
        yield "end_s", f"is not after start_s={start or 0:g}; a window ends after it starts"


def _overlaps(spans: list[tuple[Path, float, float, int]]) -> list[Problem]:
    """Windows (video, start, end, line) of one video that overlap: frames with two scores."""
    problems = []
    reach: dict[Path, tuple[float, float, int]] = {}  # per video: the window reaching furthest
    for video, start, end, line in sorted(spans, key=lambda span: span[1]):
        before = reach.get(video)
        if before is not None and start < before[1]:
            message = (f"overlaps the window on line {before[2]} of the same video "
                       f"({before[0]:g} s to {before[1]:g} s); windows of one video must not "
                       "overlap")
            problems.append(Problem(line, "start_s", f"{start:g}", message))
        if before is None or end > before[1]:
            reach[video] = (start, end, line)
    return problems
