"""A list of videos assessed as ``neopain assess VIDEO`` assesses one: each video's files
(``write_video_report``) in its own folder under ``out``, and one row per video in
``out/videos.csv``; here one video after another, or on Ray actors (one video per task, each
actor opening the model once).

A video that fails (unreadable, cut short) is recorded with its error and the others go on.
``videos.csv`` is rewritten after every video, so a run that stops resumes: videos with a row
saying ``done`` or ``no_face`` are not assessed again (``videos.json`` keeps the model and
options: a rerun with others is refused).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from neopain.data.files import read_regular_text
from neopain.data.json_text import parse_json
from neopain.data.outputs import atomic_output, safe_name, write_text_atomic
from neopain.data.parallel import LOCAL, Backend, keep_worker_state, ordered_map, worker_state
from neopain.errors import NeopainError
from neopain.monitor.video import NoFaceError, assess_video
from neopain.monitor.video_report import write_video_report
from neopain.prediction import Predictor

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
MAX_LIST_BYTES = 10_000_000
TABLE = "videos.csv"
SETTINGS = "videos.json"
"""The model and options a list was assessed with: a rerun with others is refused."""
COLUMNS = ("video", "folder", "status", "error", "model", "frames", "face_frames",
           "duration_s", "observed_s", "pain_s", "pain_share", "episodes")
FINISHED = ("done", "no_face")
"""Statuses a resumed run does not assess again (``error`` is tried again)."""


@dataclass(frozen=True)
class VideoOptions:
    """How each video is assessed: ``monitor.video.assess_video``'s options, all given (its
    defaults stay in one place: its signature, and the CLI's)."""

    detector: str
    window: int
    hysteresis: float
    max_gap_s: float
    step: int
    min_episode_s: float
    dan_window_s: float


@dataclass(frozen=True)
class VideoJob:
    """One video of a list and the folder its files go to (both absolute)."""

    video: Path
    folder: Path


def read_video_list(path: str | os.PathLike[str], *, out: Path) -> list[VideoJob]:
    """The videos a list file names, one path per line (blank lines and ``#`` comments
    skipped; a relative path is taken from the list's folder), each with its folder under
    ``out``: the path relative to the list's folder without its suffix (else its name).

    Raises:
        NeopainError: an unreadable list, a line that is no video file, two videos that would
            share a folder, or a list naming none (each names the file and line).
    """
    path = Path(path)
    text = read_regular_text(path, what="a list of videos, one path per line",
                             max_bytes=MAX_LIST_BYTES)
    jobs: list[VideoJob] = []
    lines: dict[Path, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        video = (path.parent / entry).absolute()
        where = f"{path} line {number}"
        if video.suffix.lower() not in VIDEO_SUFFIXES:
            raise NeopainError(f"{where}: {entry!r} is not a video; valid suffixes: "
                               f"{', '.join(VIDEO_SUFFIXES)}")
        if not video.is_file():
            raise NeopainError(f"{where}: {entry!r}: no such file")
        folder = out.absolute() / _folder_name(video, base=path.parent.absolute())
        if folder in lines:
            raise NeopainError(f"{where}: {entry!r} would write into the same folder as line "
                               f"{lines[folder]} ({folder.relative_to(out.absolute())}); "
                               "rename one of them")
        lines[folder] = number
        jobs.append(VideoJob(video, folder))
    if not jobs:
        raise NeopainError(f"{path}: names no video; expected one video path per line")
    return jobs


def _folder_name(video: Path, *, base: Path) -> Path:
    try:
        relative = video.relative_to(base).with_suffix("")
    except ValueError:
        relative = Path(video.stem)
    return Path(*(safe_name(part) for part in relative.parts))


def finished_videos(out: Path) -> dict[str, dict]:
    """The rows of an earlier run's ``videos.csv`` whose video need not be assessed again."""
    table = out / TABLE
    if not table.is_file():
        return {}
    rows = pd.read_csv(table, dtype=str, keep_default_na=False).to_dict("records")
    return {row["video"]: row for row in rows if row.get("status") in FINISHED}


def _row(job: VideoJob, *, status: str, error: str = "", summary: dict | None = None) -> dict:
    summary = summary or {}
    return {"video": str(job.video), "folder": str(job.folder), "status": status,
            "error": error, "model": summary.get("model", ""),
            "frames": summary.get("frames", ""), "face_frames": summary.get("face_frames", ""),
            "duration_s": summary.get("duration_s", ""),
            "observed_s": summary.get("observed_s", ""), "pain_s": summary.get("pain_s", ""),
            "pain_share": "" if summary.get("pain_share") is None else summary["pain_share"],
            "episodes": len(summary["episodes"]) if "episodes" in summary else ""}


def assess_one_video(job: VideoJob, predictor: Predictor, *, options: VideoOptions) -> dict:
    """Assess ``job.video``, write its files into ``job.folder``; its ``videos.csv`` row."""
    try:
        result = assess_video(job.video, predictor, **asdict(options))
        summary = result.summary()
        try:
            write_video_report(result, job.folder)
        except NoFaceError:
            return _row(job, status="no_face", summary=summary)
    except NeopainError as error:
        return _row(job, status="error", error=str(error))
    except Exception as error:  # noqa: BLE001 - one video's failure must not end the list
        first = (str(error).splitlines() or [""])[0][:200]
        return _row(job, status="error", error=f"{job.video}: {type(error).__name__}: {first}")
    return _row(job, status="done", summary=summary)


def _assess_on_actor(job: VideoJob, *, options: VideoOptions) -> dict:
    """One video on a Ray actor, with the model it opened once (``keep_worker_state``)."""
    return assess_one_video(job, worker_state(), options=options)


def assess_videos(jobs: Sequence[VideoJob], predictor: Predictor, *, out: Path,
                  options: VideoOptions, backend: Backend = LOCAL,
                  open_predictor: Callable[[], Predictor] | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Assess every job not finished by an earlier run into ``out``; every job's row, in the
    list's order (also written to ``out/videos.csv`` after each video).

    Args:
        predictor: the model, used here (the caller closes it).
        backend: ``local``: one video after another here; ``ray``: one video per Ray task,
            on actors that each open ``open_predictor()`` (a picklable function) once.
        on_progress: ``(videos done, videos)``, finished ones of an earlier run counted.

    Raises:
        NeopainError: ``ray`` without ``open_predictor``.
    """
    if backend.is_ray and open_predictor is None:
        raise NeopainError("the Ray backend needs open_predictor (a picklable function that "
                           "opens the model)")
    out.mkdir(parents=True, exist_ok=True)
    _same_settings(out, {"model": predictor.name, **asdict(options)})
    earlier = finished_videos(out)
    rows: dict[str, dict] = {str(job.video): earlier[str(job.video)]
                             for job in jobs if str(job.video) in earlier}
    todo = [job for job in jobs if str(job.video) not in rows]
    if on_progress is not None:
        on_progress(len(rows), len(jobs))
    if not todo:  # the table as this list orders it, though nothing was left to assess
        _write_table(out, [rows[str(job.video)] for job in jobs])
    for row in _run(todo, predictor, options=options, open_predictor=open_predictor,
                    backend=backend):
        rows[row["video"]] = row
        _write_table(out, [rows[str(job.video)] for job in jobs if str(job.video) in rows])
        if on_progress is not None:
            on_progress(len(rows), len(jobs))
    return [rows[str(job.video)] for job in jobs]


def _run(todo: Sequence[VideoJob], predictor: Predictor, *, options: VideoOptions,
         open_predictor: Callable[[], Predictor] | None, backend: Backend) -> Iterator[dict]:
    if not backend.is_ray:
        for job in todo:
            yield assess_one_video(job, predictor, options=options)
        return
    rows = ordered_map(partial(_assess_on_actor, options=options), todo, workers=1,
                       initializer=keep_worker_state, initargs=(open_predictor,),
                       backend=backend)
    with closing(rows):
        yield from rows


def _same_settings(out: Path, settings: dict) -> None:
    """Record ``settings`` in ``out/videos.json``, or check that an earlier run's are the same
    (a resumed run must not mix two models' results in one table).

    Raises:
        NeopainError: ``out`` holds a run with another model or other options.
    """
    path = out / SETTINGS
    start_again = "give another --out, or delete that folder to start again"
    if path.is_file():
        try:
            earlier = parse_json(read_regular_text(path, what="a videos.json",
                                                   max_bytes=100_000))
        except ValueError:  # not JSON, or nested too deep
            earlier = None
        if not isinstance(earlier, dict):
            raise NeopainError(f"{path}: not the settings neopain assess writes (a JSON object "
                               f"of the model and options); {start_again}")
        differ = sorted(key for key in settings.keys() | earlier.keys()
                        if earlier.get(key) != settings.get(key))
        if differ:
            raise NeopainError(f"{out} holds videos assessed with other settings ("
                               + ", ".join(f"{key}: {earlier.get(key)!r} then, "
                                           f"{settings.get(key)!r} now" for key in differ)
                               + f"); {start_again}")
        return
    write_text_atomic(path, json.dumps(settings, indent=2) + "\n")


def _write_table(out: Path, rows: Sequence[dict]) -> None:
    with atomic_output(out / TABLE) as partial_file:
        pd.DataFrame(list(rows), columns=list(COLUMNS)).to_csv(partial_file, index=False)
