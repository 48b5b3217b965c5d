"""``neopain dataset frames``: video frames sampled by pain score inside observation windows."""

from __future__ import annotations

import os
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from neopain.cli.console import console, err_console, fail, progress_bar
from neopain.cli.dataset import count_problems, print_problems
from neopain.data.manifest import load_manifest
from neopain.data.video import (
    FramesResult,
    VideoTableError,
    extract_frames,
    make_policy,
    read_videos_table,
)
from neopain.errors import NeopainError


class PolicyName(str, Enum):
    dan = "dan"
    flacc = "flacc"
    fixed = "fixed"


class ImageFormat(str, Enum):
    jpg = "jpg"
    png = "png"


def frames(
    table: Annotated[Path, typer.Argument(
        metavar="VIDEOS.CSV",
        help="Videos table CSV: video, subject, score; optional scale, label, source, "
             "start_s, end_s and columns to carry to every frame.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write frames/ and manifest.csv.")],
    policy: Annotated[PolicyName, typer.Option(
        help="Sampling: dan (DAN face 0-1: 1 frame / 2 s, 2-4: 1/s), "
             "flacc (FLACC face 0-1: 1/s, 2: 2/s), fixed (--fps, any score).")] = PolicyName.dan,
    fps: Annotated[Optional[float], typer.Option(
        help="Frames per second for --policy fixed (default 1).")] = None,
    pain_from: Annotated[Optional[float], typer.Option(
        help="Score from which a window without a label is pain (default 2 for dan and "
             "flacc; without it, fixed needs a label on every row).")] = None,
    max_frames: Annotated[Optional[int], typer.Option(
        min=1, help="At most this many frames per video, earliest first.")] = None,
    max_seconds: Annotated[Optional[float], typer.Option(
        help="At most this many seconds of window time per video, earliest first.")] = None,
    image_format: Annotated[ImageFormat, typer.Option(
        "--format", help="Image format: jpg (quality 95) or png (lossless).")] = ImageFormat.jpg,
) -> None:
    """Extract frames from videos at a rate set by each window's pain score.

    Each row of the videos table is an observation window of one video with the face item
    score a rater gave. Frames are taken at the policy's rate inside the window, each the
    decoded frame nearest in time (container timestamps). Writes OUT/frames/<subject>/ and
    OUT/manifest.csv. A video that cannot be read is reported and the others continue.
    """
    # FFmpeg's own messages about a corrupt file would break the progress bar; the failure
    # is reported in the table below. Set OPENCV_FFMPEG_LOGLEVEL=16 to see them.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if fps is not None and policy is not PolicyName.fixed:
        fail(f"--fps applies to --policy fixed only; --policy {policy.value} sets its own rates")
    try:
        chosen = make_policy(policy.value, fps=fps, pain_from=pain_from)
        videos = len({window.video for window in read_videos_table(table, policy=chosen)})
        with progress_bar(f"extracting frames from {videos} videos") as update:
            result = extract_frames(table, out=out, policy=chosen, max_frames=max_frames,
                                    max_seconds=max_seconds, image_format=image_format.value,
                                    on_progress=update)
    except VideoTableError as error:
        print_problems(error)
        fail(f"{escape(str(table))} is not a valid videos table: {count_problems(error)}")
    except NeopainError as error:
        fail(escape(str(error)))
    _print_result(result)
    if result.frames == 0:
        fail("no frames were extracted: " + ("no video could be read" if not result.videos else
                                             "no window lies inside its video"))
    if result.failed:
        err_console.print(f"[bold yellow]warning:[/] {len(result.failed)} of "
                          f"{len(result.failed) + len(result.videos)} videos could not be read; "
                          "their rows gave no frames (see the table above)", highlight=False)


def _print_result(result: FramesResult) -> None:
    videos = Table(title=f"{result.frames} frames from {len(result.videos)} videos")
    for name, justify in [("video", "left"), ("subject", "left"), ("table lines", "left"),
                          ("frames", "right"), ("first s", "right"), ("last s", "right")]:
        videos.add_column(name, justify=justify, overflow="fold")
    for video in result.videos:
        times = ["-" if t is None else f"{t:.3f}" for t in (video.first_s, video.last_s)]
        videos.add_row(Text(video.video), Text(", ".join(video.subjects)),
                       ", ".join(map(str, video.lines)), str(video.frames), *times)
    console.print(videos)
    if result.warnings:
        n = len(result.warnings)
        warnings = Table(title=f"{n} warning{'' if n == 1 else 's'}", title_style="yellow")
        warnings.add_column("line", justify="right")
        for name in ("video", "warning"):
            warnings.add_column(name, overflow="fold")
        for warning in result.warnings:
            warnings.add_row(str(warning.line), Text(warning.video), Text(warning.message))
        console.print(warnings)
    if result.failed:
        failed = Table(title=f"videos that could not be read: {len(result.failed)}",
                       title_style="red")
        for name in ("video", "table lines", "reason"):
            failed.add_column(name, overflow="fold")
        for video in result.failed:
            failed.add_row(Text(video.video), ", ".join(map(str, video.lines)), Text(video.reason))
        err_console.print(failed)
    if result.frames:
        labels = Counter(load_manifest(result.manifest).table["label"])
        console.print(f"wrote {result.frames} frames ({labels['pain']} pain, "
                      f"{labels['nopain']} nopain) and [bold]{escape(str(result.manifest))}[/]",
                      highlight=False)
