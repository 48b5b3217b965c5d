"""``neopain faces detect|benchmark|list``: crops and a crops manifest; the detector comparison."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from neopain.cli.backend import AddressOption, BackendOption, backend_of
from neopain.cli.console import console, err_console, fail, progress_bar
from neopain.cli.dataset import count_problems, print_problems, print_summary
from neopain.cli.synth import default_workers
from neopain.data.manifest import ManifestError, load_manifest
from neopain.errors import NeopainError

app = typer.Typer(help="Detect faces, crop them, compare detectors.", no_args_is_help=True)

ALL_DETECTORS = "all"
SSD_DETECTOR = "opencv-ssd"
MAX_MISSING_SHOWN = 10
INTERRUPTED = 130


def _lazy_bar(stack: ExitStack, description: str) -> Callable[[int, int], None]:
    """A progress hook whose bar opens at the first report (after the arguments were checked)."""
    bars: list = []

    def update(done: int, total: int) -> None:
        if not bars:
            bars.append(stack.enter_context(progress_bar(description)))
        bars[0](done, total)

    return update


def _model_detectors() -> list[str]:
    from neopain.faces.base import detector_class, list_detectors

    return [name for name in list_detectors() if detector_class(name).needs_model]


def _options(detector: str, *, threshold: float | None, model: Path | None) -> dict[str, Any]:
    from neopain.faces.base import DetectorError, detector_class

    try:
        family = detector_class(detector)
    except DetectorError as error:
        fail(escape(str(error)))
    if model is None and family.needs_model:
        fail(f"--detector {escape(detector)} runs your own model file: give it with --model PATH "
             "(docs/faces.md, 'Detectors from your own file', says which files work)")
    if model is not None and not family.needs_model:
        fail(f"--model applies to the detectors that run your model file "
             f"({', '.join(_model_detectors())}), not {escape(detector)!r}")
    options: dict[str, Any] = {} if threshold is None else {"threshold": threshold}
    return options if model is None else {**options, "model": model}


def _benchmark_models(models: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """``--model NAME=PATH`` options, or a bare ``--model PATH`` when exactly one detector
    named runs a model file."""
    needing = _model_detectors()
    options: dict[str, dict[str, Any]] = {}
    for text in models:
        name, sep, path = text.partition("=")
        if not sep:
            named = [n for n in names if n in needing]
            if len(named) != 1:
                fail(f"--model {escape(text)}: say which detector it is for, as NAME=PATH "
                     f"(detectors that run a model file: {', '.join(needing)})")
            name, path = named[0], text
        if name not in needing:
            fail(f"--model {escape(text)}: {escape(name)!r} does not run a model file; valid: "
                 f"{', '.join(needing)}")
        if name not in names:
            fail(f"--model {escape(text)}: {escape(name)!r} is not in --detectors; add it there "
                 "or leave this --model out")
        if name in options:
            fail(f"--model names {escape(name)!r} twice; give each detector one file")
        options[name] = {"model": Path(path)}
    return options


@app.command()
def detect(
    manifest: Annotated[Path, typer.Argument(help="The manifest of the images.")],
    detector: Annotated[str, typer.Option(
        "--detector", help="Detector, e.g. mediapipe-short (all: `neopain faces list`).")],
    out: Annotated[Path, typer.Option(
        "--out", help="Folder to write into; run again into the same folder to resume.")],
    margin: Annotated[float, typer.Option(
        help="Added to each side of the face box, as a share of its size.")] = 0.25,
    size: Annotated[int, typer.Option(
        help="Side of the square crops in pixels; 0 keeps each crop's own size.")] = 224,
    landmarks: Annotated[bool, typer.Option(
        "--landmarks", help="Also save the face mesh of each crop (.npy, crop pixels).")] = False,
    keep_missing: Annotated[bool, typer.Option(
        "--keep-missing", help="Keep images without a face, with an empty box.")] = False,
    align: Annotated[bool, typer.Option(
        "--align", help="Rotate crops so that the eyes lie level.")] = False,
    workers: Annotated[Optional[int], typer.Option(
        help="Processes detecting faces (default: this machine's CPUs, at most 4); with "
             "--backend ray, Ray actors (default: one per CPU of the cluster).")] = None,
    backend: BackendOption = "local",
    address: AddressOption = None,
    threshold: Annotated[Optional[float], typer.Option(
        help="Lowest face score kept (default: the detector's own).")] = None,
    model: Annotated[Optional[Path], typer.Option(
        help="Your model file, for the detectors that run one (onnx, retinaface, yolo-face, "
             "opencv-ssd).")] = None,
    config: Annotated[Optional[Path], typer.Option(
        help="opencv-ssd only: its network file (.prototxt or .pbtxt) when it is not next to "
             "--model under its usual name.")] = None,
) -> None:
    """Detect each image's face, crop it and write a manifest of the crops.

    Writes OUT/crops/<subject>/<stem>.jpg, OUT/manifest.csv (rows point to the crops; face_box
    and keypoints in crop pixels; original_image and original_face_box keep the original),
    OUT/no_face.csv (images without a face, or unreadable) and, with --landmarks,
    OUT/landmarks/<subject>/<stem>.npy. An interrupted run resumes where it stopped.
    """
    from neopain.faces.detect import detect_faces  # imports the detector families

    options = _options(detector, threshold=threshold, model=model)
    runs_on = backend_of(backend, address=address, workers=workers)
    if config is not None:
        if detector != SSD_DETECTOR:
            fail(f"--config applies to --detector {SSD_DETECTOR} only, not {escape(detector)!r}")
        options["config"] = config
    try:
        loaded = load_manifest(manifest)
        with ExitStack() as stack:
            result = detect_faces(
                loaded, detector=detector, out=out, margin=margin, size=size or None,
                landmarks=landmarks, keep_missing=keep_missing, align=align,
                workers=default_workers() if workers is None else workers, backend=runs_on,
                detector_options=options, on_progress=_lazy_bar(stack, "detecting faces"))
    except ManifestError as error:
        print_problems(error)
        fail(f"{escape(str(manifest))} is not a valid manifest: {count_problems(error)}")
    except NeopainError as error:
        fail(escape(str(error)))
    except KeyboardInterrupt:
        fail("interrupted; run the same command again to resume where it stopped",
             code=INTERRUPTED)
    table = Table(title=f"faces detect ({escape(detector)}): {result.faces} of "
                        f"{result.images} images with a face")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("images", str(result.images))
    table.add_row("faces found", str(result.faces))
    table.add_row("no face", str(result.no_face))
    table.add_row("unreadable", str(result.unreadable))
    table.add_row("skipped as done (earlier run)", str(result.skipped))
    if landmarks:
        table.add_row("crops without face mesh", str(result.no_landmarks))
    table.add_row("rows in the new manifest", str(result.rows))
    table.add_row("seconds", f"{result.seconds:.1f}")
    if result.processed:
        table.add_row("ms per image (wall clock)",
                      f"{1000 * result.seconds / result.processed:.1f}")
    if result.detect_ms is not None:
        table.add_row("ms per detection (median)", f"{result.detect_ms:.1f}")
    console.print(table)
    if result.missing:
        _print_missing(result)
    print_summary(load_manifest(result.manifest, check_files=True), path=result.manifest,
                  checked_files=True)
    console.print(f"wrote [bold]{escape(str(result.root))}[/]: manifest.csv, no_face.csv, crops/"
                  + (", landmarks/" if landmarks else ""), highlight=False)
    if result.images and not result.faces:
        err_console.print(f"[bold yellow]warning:[/] no face was found in any of the "
                          f"{result.images} images: check the detector and its threshold "
                          "(--detector, --threshold) and that the images show faces",
                          highlight=False)
    if result.unreadable:
        err_console.print(f"[bold yellow]warning:[/] {result.unreadable} of {result.images} "
                          f"images could not be read (listed in {escape(str(result.report))})",
                          highlight=False)


def _print_missing(result: Any) -> None:
    n = len(result.missing)
    shown = result.missing[:MAX_MISSING_SHOWN]
    title = f"images left out: {n}" + (f" (first {len(shown)})" if n > len(shown) else "")
    table = Table(title=title, title_style="yellow")
    table.add_column("line", justify="right")
    for name in ("image", "status", "reason"):
        table.add_column(name, overflow="fold")
    for missing in shown:
        table.add_row(str(missing.line), Text(missing.image), missing.status,
                      Text(missing.reason))
    console.print(table)
    if n > len(shown):
        console.print(f"... all {n} in {escape(str(result.report))}", highlight=False)


@app.command()
def benchmark(
    source: Annotated[Path, typer.Argument(help="A manifest CSV, or a video file.")],
    detectors: Annotated[str, typer.Option(
        "--detectors", help="Comma-separated detectors, e.g. mediapipe-short,opencv-haar, or "
                            "all: every one that can run here (see `neopain faces list`).")
    ] = ALL_DETECTORS,
    mesh: Annotated[bool, typer.Option(
        "--mesh", help="Also time the face mesh (video mode for a video).")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the figures as JSON only (no table, no progress bar).")] = False,
    limit: Annotated[Optional[int], typer.Option(
        help="Use at most this many images or frames.")] = None,
    repeats: Annotated[int, typer.Option(help="Timed calls per image.")] = 1,
    model: Annotated[Optional[list[str]], typer.Option(
        help="NAME=PATH: the model file of a detector that runs one (onnx, retinaface, "
             "yolo-face, opencv-ssd); repeat for several.")] = None,
) -> None:
    """Compare detectors on the same images: share with no face, median and p95 ms, images/s.

    Every detector (and with --mesh the face mesh) runs on every image in turn, at its default
    threshold. Unreadable manifest images are skipped and listed.
    """
    from neopain.faces.benchmark import (
        ManifestImages,
        benchmark_detectors,
        images_from_path,
        runnable_detectors,
    )

    names = [name.strip() for name in detectors.split(",") if name.strip()]
    options = _benchmark_models(model or [], names if names != [ALL_DETECTORS] else
                                _model_detectors())
    left_out: dict[str, str] = {}
    try:
        with ExitStack() as stack:
            chosen: list[Any] = names
            if names == [ALL_DETECTORS]:  # built once here, timed as built
                chosen, left_out = runnable_detectors(stack, detector_options=options)
                if broken := {name: why for name, why in left_out.items() if name in options}:
                    fail("; ".join(f"--model {escape(name)}: {escape(why)}"
                                   for name, why in broken.items()))
            images = images_from_path(source, limit=limit)
            progress = None if as_json else _lazy_bar(
                stack, f"timing {len(chosen)} detectors" + (" and the face mesh" if mesh else ""))
            figures = benchmark_detectors(images, detectors=chosen, include_mesh=mesh,
                                          mesh_video=not isinstance(images, ManifestImages),
                                          detector_options=options, repeats=repeats,
                                          on_progress=progress)
    except ManifestError as error:
        print_problems(error)
        fail(f"{escape(str(source))} is not a valid manifest: {count_problems(error)}")
    except NeopainError as error:
        fail(escape(str(error)))
    skipped = images.skipped_ if isinstance(images, ManifestImages) else []
    if as_json:
        print(json.dumps({"source": str(source), "images": figures[0].images,
                          "detectors": [f.to_dict() for f in figures],
                          "left_out": [{"detector": n, "reason": r} for n, r in left_out.items()],
                          "skipped": [{"image": i, "reason": r} for i, r in skipped]}, indent=2))
        return
    thresholds = ", ".join(f"{f.detector} {f.threshold:g}" for f in figures
                           if f.threshold is not None)
    table = Table(title=f"{figures[0].images} images of {escape(str(source))}",
                  caption=Text(f"lowest score counted as a face: {thresholds}"))
    table.add_column("detector", no_wrap=True)
    for name in ("images", "no face", "median ms", "p95 ms", "images/s"):
        table.add_column(name, justify="right")
    for f in figures:
        table.add_row(Text(f.detector), str(f.images), f"{100 * f.no_face_share:.1f}%",
                      f"{f.median_ms:.2f}", f"{f.p95_ms:.2f}", f"{f.images_per_s:.1f}")
    console.print(table)
    for name, reason in left_out.items():
        console.print(f"not run: {escape(name)}: {escape(reason)}", highlight=False)
    if skipped:
        err_console.print(f"[bold yellow]warning:[/] {len(skipped)} unreadable images skipped: "
                          + escape(", ".join(f"{i} ({r})" for i, r in skipped[:5]))
                          + (" ..." if len(skipped) > 5 else ""), highlight=False)


@app.command("list")
def list_command() -> None:
    """The registered detectors: default threshold, keypoints, whether each runs here."""
    from neopain.faces.base import detector_class, detector_problem, list_detectors

    table = Table(title="face detectors")
    table.add_column("detector", no_wrap=True)
    table.add_column("default threshold", justify="right")
    table.add_column("keypoints")
    table.add_column("runs here", overflow="fold")
    table.add_column("what", overflow="fold")
    ready = 0
    for name in list_detectors():
        family = detector_class(name)
        # the docstring's first paragraph: its first sentence may run over several lines
        what = " ".join((family.__doc__ or "").replace("``", "").strip().split("\n\n")[0]
                        .split())
        if family.needs_model:
            status = Text("with your file: --model PATH")
        elif (problem := detector_problem(name)) is not None:
            status = Text(f"no: {problem}", style="yellow")
        elif not family.reads_pixels:
            status = Text("yes (reports the manifest's boxes)")
        else:
            status = Text("yes")
            ready += 1
        table.add_row(name, f"{family.default_threshold:g}",
                      "5" if family.has_keypoints else "no", status, Text(what))
    console.print(table)
    console.print(f"{ready} detectors look at pixels with no file of yours", highlight=False)
