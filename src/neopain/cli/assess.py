"""``neopain assess``: an image, a folder, a manifest or a video → pain assessments.

Exit codes: 0 done; 1 bad input (the message says what to fix); 3 no face was found in any
image or frame, so nothing could be assessed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from neopain.cli.backend import AddressOption, BackendOption, backend_of
from neopain.cli.console import console, err_console, fail, progress_bar
from neopain.data.parallel import Backend
from neopain.errors import NeopainError
from neopain.models.calibrator import refers

FORMATS = ("table", "csv", "json")
NO_FACE_EXIT = 3


def _kind(path: Path) -> str:
    from neopain.monitor.images import IMAGE_SUFFIXES
    from neopain.monitor.video_batch import VIDEO_SUFFIXES

    if os.path.isdir(path):
        return "folder"
    if not os.path.lexists(path):  # False for names the file system refuses, too
        fail(f"{escape(str(path))}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "manifest"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix == ".txt":
        return "videos"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    fail(f"{escape(str(path))}: cannot tell what it is from {suffix or 'no suffix'!r}; valid: an "
         f"image ({', '.join(IMAGE_SUFFIXES)}), a folder of images, a manifest .csv, a video "
         f"({', '.join(VIDEO_SUFFIXES)}) or a .txt list of videos")


PROB_WORDS = {
    "calibrated": "P(pain) is a calibrated probability",
    "uncalibrated": "P(pain) is the network's own probability, not calibrated (neopain "
                    "calibrate, then --calibrator or neopain export, makes it one)",
    "score": "P(pain) is a rule-based score, not a probability (a run's --calibrator maps "
             "it to one)",
}
"""What each ``Prediction.prob_kind`` means, in the printed summary."""


def _seconds(text: str | None, *, option: str) -> float:
    """Seconds from ``10``, ``10s`` or ``2.5 s``; ``DAN_WINDOW_S`` for None."""
    from neopain.monitor.video import DAN_WINDOW_S, MIN_DAN_WINDOW_S

    if text is None:
        return DAN_WINDOW_S
    number = text.strip().removesuffix("s").strip()
    try:
        seconds = float(number)
    except ValueError:
        seconds = float("nan")
    if not MIN_DAN_WINDOW_S <= seconds < float("inf"):
        fail(f"{option} {escape(text)} is not valid; valid: a number of seconds >= "
             f"{MIN_DAN_WINDOW_S:g}, e.g. 10s")
    return seconds


def _predictor(model: str | None, *, threads: int | None, batch_size: int,
               calibrator: Path | None, mc_passes: int):
    """The predictor, shown through ``calibrator`` when one is given (read first, so that a
    bad file is named before a model is loaded)."""
    from neopain.models.calibrator import read_calibrator
    from neopain.prediction import CalibratedPredictor, load_predictor

    fitted = None if calibrator is None else read_calibrator(calibrator)
    predictor = load_predictor(model, threads=threads, batch_size=batch_size,
                               mc_passes=mc_passes)
    if fitted is None:
        return predictor
    return CalibratedPredictor(predictor, fitted, where=str(calibrator))


def _kind_line(kinds) -> str:
    """The printed sentence saying what the P(pain) shown is; "" when nothing was assessed."""
    found = [kind for kind in PROB_WORDS if kind in set(kinds)]
    return "; ".join(PROB_WORDS[kind] for kind in found)


def assess(
    source: Annotated[Path, typer.Argument(
        help="An image, a folder of images (searched at any depth), a manifest .csv (faces "
             "from its face_box column), a video, or a .txt list of videos (one path per "
             "line).")],
    model: Annotated[Optional[str], typer.Option(
        help="A rule-based model's name (default: nfcs, the facial-action score; neopain "
             "models list) or an .onnx file from neopain export.")] = None,
    detector: Annotated[Optional[str], typer.Option(
        help="Face detector (neopain faces list). Default: mediapipe-short; for a manifest, "
             "its own face boxes.")] = None,
    output_format: Annotated[str, typer.Option(
        "--format", help="Images: table (readable), csv or json (printed to stdout).")
    ] = "table",
    out: Annotated[Optional[Path], typer.Option(
        help="Images: write the results to this .csv or .json file. Video: the folder for "
             "timeline.csv, episodes.csv, summary.json, timeline.png and report.html "
             "(default: NAME-assessment next to the video). A list of videos: the folder "
             "for one such folder per video and videos.csv (default: NAME-assessment next "
             "to the list).")] = None,
    report: Annotated[Optional[Path], typer.Option(
        help="Video: also write the HTML report here.")] = None,
    overlays: Annotated[Optional[Path], typer.Option(
        help="Images: write one picture per assessed image into this folder: face box, label, "
             "P(pain) and the model's heatmap of where it saw pain (nfcs: its facial actions' "
             "regions; .onnx: occlusion).")
    ] = None,
    window: Annotated[int, typer.Option(
        help="Video: frames whose median P(pain) is the smoothed value.")] = 5,
    hysteresis: Annotated[float, typer.Option(
        help="Video: how far past the threshold the smoothed P(pain) must go to change "
             "state.")] = 0.1,
    max_gap: Annotated[float, typer.Option(
        help="Video: seconds without a face after which the smoothing starts afresh.")] = 2.0,
    step: Annotated[int, typer.Option(help="Video: assess every STEP-th frame.")] = 1,
    min_episode: Annotated[float, typer.Option(
        help="Video: leave out pain episodes shorter than this many seconds.")] = 0.0,
    dan_window: Annotated[Optional[str], typer.Option(
        help="Video, nfcs: seconds per window of the DAN facial score (0-4), e.g. 10s or 5 "
             "[default: 10s].")] = None,
    threads: Annotated[Optional[int], typer.Option(
        help="ONNX Runtime threads (default: one per core); --backend ray: each actor's "
             "threads and the CPUs it takes (default: 1, one actor per CPU).")] = None,
    batch_size: Annotated[int, typer.Option(help="Faces per model call.")] = 16,
    calibrator: Annotated[Optional[Path], typer.Option(
        help="A run's calibrator (runs/NAME/fold_K/calibrator.json, neopain calibrate) to "
             "show the model's P(pain) through, with its referral band; replaces one embedded "
             "in an .onnx file.")] = None,
    mc_passes: Annotated[int, typer.Option(
        help="Stochastic passes with dropout on (MC dropout) per face, for models that can "
             "(uncertainty); 0: one deterministic pass.")] = 0,
    backend: BackendOption = "local",
    address: AddressOption = None,
) -> None:
    """Detect the face, crop it as the model was trained, predict pain; images or a video.

    Images and manifests: one row per image (face box, P(pain), label, or why there is
    none; prob_kind says whether P(pain) is calibrated, uncalibrated or a rule-based score,
    prob_raw and prediction_set come with a calibrator). A video: a per-frame timeline with
    smoothing, pain episodes, the share of time in pain, a timeline plot and an HTML report.
    nfcs: the facial actions present with their intensities and count; a face it cannot read
    (head turned too far, too small) is labelled cannot_assess with the reason, never given a
    P(pain); a video gets the DAN facial score per --dan-window.

    Exit codes: 0 done, 1 bad input, 3 no face found in any image or frame.

    Examples: neopain assess baby.jpg --model model.onnx;
    neopain assess clip.mp4 --model model.onnx --out clip-assessment;
    neopain assess clip.mp4 --model nfcs --dan-window 10s
    """
    if output_format not in FORMATS:
        fail(f"--format {escape(output_format)} is not valid; valid: {', '.join(FORMATS)}")
    kind = _kind(source)
    if mc_passes < 0:
        fail(f"--mc-passes {mc_passes} must be 0 (one deterministic pass) or more, e.g. 20")
    if threads is not None and threads < 1:
        fail(f"--threads {threads} is not valid; valid: a whole number >= 1, or leave it out")
    # on Ray each actor runs on --threads (1 unless given) and takes as many CPUs
    runs_on = backend_of(backend, address=address, actor_threads=threads or 1)
    if runs_on.is_ray and kind == "video":
        fail("--backend ray assesses images, folders, manifests and lists of videos (one "
             "video per task); a single video runs here (--backend local)")
    if runs_on.is_ray:  # Ray's workers open these where they run: not from this folder
        from neopain.prediction import predictor_kinds

        if model and Path(model).exists() and model not in predictor_kinds():  # a file, a run
            model = str(Path(model).absolute())
        calibrator = None if calibrator is None else calibrator.absolute()
    opener = partial(_predictor, model, threads=threads, batch_size=batch_size,
                     calibrator=calibrator, mc_passes=mc_passes)
    actor_opener = partial(opener, threads=runs_on.actor_threads) if runs_on.is_ray else opener
    try:
        with opener() as predictor:
            if kind in ("video", "videos"):
                if output_format != "table" or overlays is not None:
                    fail("--format and --overlays are for images; a video writes its files "
                         "into --out")
                options = _video_options(detector, window=window, hysteresis=hysteresis,
                                         max_gap=max_gap, step=step, min_episode=min_episode,
                                         dan_window=dan_window)
            if kind == "videos":
                if report is not None:
                    fail("--report is for one video; each video of a list gets its "
                         "report.html in its folder under --out")
                _videos(source, predictor, out=out, backend=runs_on, opener=actor_opener,
                        options=options)
            elif kind == "video":
                _video(source, predictor, out=out, report=report, options=options)
            else:
                if report is not None or dan_window is not None:
                    fail(f"{'--report' if report is not None else '--dan-window'} is for "
                         "videos; for images use --out results.csv or .json")
                _images(source, kind, predictor, detector=detector, output_format=output_format,
                        out=out, batch_size=batch_size, overlays=overlays,
                        backend=runs_on, opener=actor_opener)
    except NeopainError as error:
        fail(escape(str(error)))


def _images(source: Path, kind: str, predictor, *, detector: str | None, output_format: str,
            out: Path | None, batch_size: int, overlays: Path | None, backend: Backend,
            opener: Callable[[], Any]) -> None:
    from neopain.data.manifest import load_manifest
    from neopain.monitor.images import (
        assess_images, assess_manifest, image_files, results_table,
    )

    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise NeopainError(f"--out {out}: must end in .csv or .json")
    quiet = output_format != "table"  # stdout carries the data: no progress bar there
    if kind == "manifest":
        manifest = load_manifest(source)

        def run(update=None):
            return assess_manifest(manifest, predictor, detector=detector,
                                   batch_size=batch_size, on_progress=update, backend=backend,
                                   open_predictor=opener)
    else:
        if kind == "image":  # one image that cannot be read is an error, not a result row
            from neopain.data.images import read_image

            read_image(source)
        paths = image_files(source) if kind == "folder" else [source]
        if not paths:
            raise NeopainError(f"{source}: no image files in it (any depth); valid suffixes: "
                               ".jpg .jpeg .png .bmp .tif .tiff .webp")

        def run(update=None):
            return assess_images(paths, predictor, detector=detector or "mediapipe-short",
                                 batch_size=batch_size, on_progress=update, backend=backend,
                                 open_predictor=opener)
    if quiet:
        results = run()
    else:
        with progress_bar("assessing images") as update:
            results = run(update)
    if overlays is not None:
        from neopain.monitor.overlays import write_overlays

        files = [manifest.image_path(r.row) for r in results] if kind == "manifest" else paths
        if quiet:
            write_overlays(results, files, predictor, overlays)
        else:
            with progress_bar("drawing overlays") as update:
                write_overlays(results, files, predictor, overlays, on_progress=update)
    table = results_table(results)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            table.to_csv(out, index=False, lineterminator="\n")
        else:
            out.write_text(table.to_json(orient="records", indent=2) + "\n", encoding="utf-8")
    if output_format == "csv":
        print(table.to_csv(index=False, lineterminator="\n"), end="")
    elif output_format == "json":
        print(table.to_json(orient="records", indent=2))
    else:
        _print_images(table, source=source, model=predictor.name, out=out, overlays=overlays)
    if not table["face"].any():
        fail(f"no face found in any of the {len(table)} images of {escape(str(source))}; "
             "nothing was assessed (check framing and lighting, or try another --detector)",
             code=NO_FACE_EXIT)


def _actions_text(record) -> str:
    """A row's facial actions for people: "brow bulge, eye squeeze (2 of 7)"; "" for a model
    that counts none or a face it could not assess."""
    import pandas as pd

    from neopain.facial_actions import ACTION_NAMES
    from neopain.scoring.explanation import action_text

    if pd.isna(record.action_count):
        return ""
    names = ", ".join(action_text(name) for name in record.actions.split("|") if name)
    return f"{names or 'none'} ({record.action_count} of {len(ACTION_NAMES)})"


def _print_images(table, *, source: Path, model: str, out: Path | None,
                  overlays: Path | None) -> None:
    import pandas as pd

    from neopain.monitor.images import CANNOT_ASSESS

    shown = table if len(table) <= 50 else table.head(50)
    view = Table(title=f"{escape(str(source))}: {len(table)} images, model {escape(model)}",
                 caption=None if len(table) <= 50 else f"first 50 of {len(table)} rows; use "
                 "--out or --format csv for all")
    kinds = set(table["prob_kind"]) - {""}
    with_sets = bool((table["prediction_set"] != "").any())
    with_actions = bool(table["action_count"].notna().any())
    columns = [("image", "left"), ("face", "right"),
               ("score" if kinds == {"score"} else "P(pain)", "right"), ("label", "left")]
    for name, justify in (columns + ([("set", "left")] if with_sets else [])
                          + ([("actions present", "left")] if with_actions else [])
                          + [("note", "left")]):
        view.add_column(name, justify=justify)
    styles = {"pain": "bold red", CANNOT_ASSESS: "bold yellow"}
    for record in shown.itertuples(index=False):
        label = (f"[{styles[record.label]}]{record.label}[/]" if record.label in styles
                 else record.label)
        band = ["uncertain: look at the baby" if refers(record.prediction_set, record.label)
                else record.prediction_set] if with_sets else []
        actions = [escape(_actions_text(record))] if with_actions else []
        prob = "" if pd.isna(record.prob_pain) else f"{record.prob_pain:.3f}"
        view.add_row(escape(str(record.image)), "yes" if record.face else "no", prob, label,
                     *band, *actions, escape(record.problem))
    console.print(view)
    if kinds:
        console.print(_kind_line(kinds))
    pain = int((table["label"] == "pain").sum())
    assessed = int(table["label"].isin(["pain", "nopain"]).sum())
    unassessable = int((table["label"] == CANNOT_ASSESS).sum())
    uncertain = sum(refers(s, label) for s, label in zip(table["prediction_set"], table["label"]))
    console.print(f"{assessed} assessed: {pain} pain, {assessed - pain} no pain"
                  + (f" ({uncertain} uncertain: look at the baby)" if with_sets else "")
                  + (f"; {unassessable} cannot be assessed (see the note)" if unassessable
                     else "")
                  + f"; {len(table) - assessed - unassessable} without a face or image"
                  + (f"; wrote {escape(str(out))}" if out is not None else "")
                  + (f"; overlays in {escape(str(overlays))}/" if overlays is not None else ""))


def _video_options(detector: str | None, *, window: int, hysteresis: float, max_gap: float,
                   step: int, min_episode: float, dan_window: str | None):
    from neopain.monitor.video_batch import VideoOptions

    return VideoOptions(detector=detector or "mediapipe-short", window=window,
                        hysteresis=hysteresis, max_gap_s=max_gap, step=step,
                        min_episode_s=min_episode,
                        dan_window_s=_seconds(dan_window, option="--dan-window"))


def _videos(source: Path, predictor, *, out: Path | None, backend: Backend,
            opener: Callable[[], Any], options) -> None:
    """A list of videos: one folder per video under ``out`` and ``out/videos.csv``."""
    from neopain.monitor.video_batch import TABLE, assess_videos, read_video_list

    out = out if out is not None else source.with_name(f"{source.stem}-assessment")
    jobs = read_video_list(source, out=out)
    with progress_bar("assessing videos") as update:
        rows = assess_videos(jobs, predictor, out=out, options=options, backend=backend,
                             open_predictor=opener, on_progress=update)
    view = Table(title=f"{escape(source.name)}: {len(rows)} videos")
    for name in ("video", "status", "length s", "in pain", "episodes"):
        view.add_column(name, justify="left" if name in ("video", "status") else "right")
    for row in rows:
        share = row["pain_share"]
        view.add_row(escape(Path(row["video"]).name), escape(str(row["status"])),
                     str(row["duration_s"]),
                     "–" if share in ("", None) else f"{100 * float(share):.1f}%",
                     str(row["episodes"]))
    console.print(view)
    console.print(f"wrote {escape(str(out / TABLE))} and one folder per video in "
                  f"{escape(str(out))}/")
    failed = [row for row in rows if row["status"] == "error"]
    for row in failed:
        err_console.print(f"error: {escape(str(row['error']))}", style="red")
    if failed:
        fail(f"{len(failed)} of {len(rows)} videos could not be assessed (see above); run the "
             "same command again to retry them")


def _video(source: Path, predictor, *, out: Path | None, report: Path | None,
           options) -> None:
    from neopain.monitor.video import NoFaceError, assess_video
    from neopain.monitor.video_report import reason_counts, write_video_report

    out = out if out is not None else source.with_name(f"{source.stem}-assessment")
    with progress_bar("assessing frames") as update:
        result = assess_video(source, predictor, **asdict(options), on_progress=update)
    try:
        written = write_video_report(result, out)
    except NoFaceError as error:
        err_console.print(f"wrote {escape(str(out / 'timeline.csv'))} (every frame: no face)")
        fail(escape(str(error)), code=NO_FACE_EXIT)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(written["html"], report)
    summary = result.summary()
    view = Table(title=f"{escape(source.name)}: model {escape(result.model)}", show_header=False)
    view.add_column("what")
    view.add_column("value", justify="right")
    view.add_row("length", f"{result.duration_s:.1f} s, {result.frames} frames assessed")
    view.add_row("frames with a face", f"{result.face_frames} of {result.frames}")
    if result.unassessable_frames:
        view.add_row("faces the model could not assess", f"{result.unassessable_frames} of "
                     f"{result.face_frames} ({escape(reason_counts(result.timeline))})")
    view.add_row("observed (with a state)", f"{result.observed_s:.1f} s "
                 f"({100 * result.observed_share:.0f}%)")
    share = "–" if result.pain_share is None else f"{100 * result.pain_share:.1f}%"
    view.add_row("time in pain", f"{result.pain_s:.1f} s ({share} of observed)")
    view.add_row("pain episodes", str(len(result.episodes)))
    view.add_row("median latency", f"{result.timeline['latency_ms'].median():.1f} ms / frame")
    sets = result.timeline["prediction_set"]
    if (sets != "").any():
        referred = sum(refers(s, label) for s, label in zip(sets, result.timeline["label"]))
        view.add_row("frames uncertain (look at the baby)",
                     f"{referred} of {int((sets != '').sum())}")
    console.print(view)
    if result.prob_kind:
        console.print(_kind_line([result.prob_kind]))
    if result.episodes:
        episodes = Table(title="pain episodes")
        for name in ("#", "start s", "end s", "duration s", "peak"):
            episodes.add_column(name, justify="right")
        for number, episode in enumerate(summary["episodes"], start=1):
            episodes.add_row(str(number), f"{episode['start_s']:.2f}", f"{episode['end_s']:.2f}",
                             f"{episode['duration_s']:.2f}", f"{episode['peak']:.3f}")
        console.print(episodes)
    if result.windows:
        _print_windows(result)
    files = ", ".join(path.name for path in written.values())
    console.print(f"wrote {escape(str(out))}/ ({files})"
                  + (f" and {escape(str(report))}" if report is not None else ""))
    if result.face_frames < result.frames:
        err_console.print(f"note: no face in {result.frames - result.face_frames} of "
                          f"{result.frames} frames (marked in the plot)", style="yellow")


def _print_windows(result) -> None:
    """The window score (DAN facial score) of each window, as a table."""
    windows = result.windows
    view = Table(title=f"DAN facial score per {result.settings['dan_window_s']:g} s window "
                 f"(0-{windows[0].of})")
    for name in ("start s", "end s", "DAN", "faces", "assessable"):
        view.add_column(name, justify="right")
    for window in windows:
        view.add_row(f"{window.start_s:.1f}", f"{window.end_s:.1f}",
                     "none" if window.score is None else str(window.score),
                     str(window.frames), str(window.assessable))
    console.print(view)
