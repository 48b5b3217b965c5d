"""``neopain demo``: a synthetic cohort through every stage that has landed, told step by step."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.markup import escape
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table

from neopain.cli import augment, evaluate, faces, folds, frames, train
from neopain.cli.console import console
from neopain.cli.synth import default_workers, synthesize
from neopain.config import get_settings
from neopain.training.augment.preview import augment_sheet
from neopain.data.synthetic import ACTIONS, PERSONAS, CohortSpec
from neopain.data.synthetic.preview import contact_sheet, timeline_plot
from neopain.data.synthetic.video import ClipSpec
from neopain.data.tables import write_table

DEMO_FOLDS = 5
DEMO_COPIES = 4
PAIN_DAN, REST_DAN = 3, 0  # the synthetic rater's DAN face item inside and outside pain episodes


def _step(number: int, title: str, what: str) -> None:
    console.print(Rule(f"[bold]step {number}: {title}"))
    console.print(what, highlight=False)


def _ground_truth_table(manifest: pd.DataFrame) -> Table:
    table = Table(title="ground truth: how often each NFCS action is present")
    table.add_column("action")
    for label in ("pain", "nopain"):
        table.add_column(f"in {label} images", justify="right")
    for action in ACTIONS:
        cells = []
        for label in ("pain", "nopain"):
            actions = manifest.loc[manifest["label"] == label, "actions"].str.split(";")
            share = sum(action in a for a in actions) / max(len(actions), 1)
            cells.append(f"{share:.0%}")
        table.add_row(action.replace("_", " "), *cells)
    return table


REAL_PHOTO_DETECTORS = ("mediapipe-short", "mediapipe-full", "opencv-haar")


def _compare_detectors_on_a_photo(out: Path, crops_manifest: Path) -> Path:
    """Each detector on scikit-image's astronaut (a real face) and coffee (none): a table and
    faces.png with the chosen faces beside a few synthetic crops."""
    import time

    import cv2
    import skimage.data

    from neopain.data.manifest import load_manifest
    from neopain.faces.base import choose_face, create_detector
    from neopain.data.images import read_image
    from neopain.faces.preview import detections_sheet

    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    empty = cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)
    table = Table(title="detectors on real photographs (scikit-image's astronaut and coffee)")
    for column in ("detector", "astronaut: face score", "coffee: faces", "ms per image"):
        table.add_column(column, justify="left" if column == "detector" else "right")
    found = {}
    for name in REAL_PHOTO_DETECTORS:
        with create_detector(name) as detector:
            detector.detect(photo)  # warm-up: the first call loads the model
            start = time.perf_counter()
            faces, none = detector.detect(photo), detector.detect(empty)
            ms = (time.perf_counter() - start) * 500
        found[name] = choose_face(faces, image_shape=photo.shape)
        score = "-" if found[name] is None else f"{found[name].score:.2f}"
        table.add_row(name, score, str(len(none)), f"{ms:.1f}")
    console.print(table)
    crops = load_manifest(crops_manifest)
    points = crops.keypoints()
    shown = [(read_image(crops.image_path(i)), points[i]) for i in range(min(3, len(crops)))]
    return detections_sheet(photo, found, shown, out / "faces.png")


def _rating_windows(videos: Path) -> Path:
    """A videos table as a rater would score the clips: DAN face 3 in episodes, 0 between."""
    clips = pd.read_csv(videos / "videos.csv", dtype=str, keep_default_na=False)
    episodes = pd.read_csv(videos / "episodes.csv", keep_default_na=False)
    rows = []
    for clip in clips[clips["subject"] != ""].itertuples():
        edges = [0.0]
        for episode in episodes[episodes["video"] == clip.video].itertuples():
            edges += [episode.start_s, episode.end_s]
        edges.append(float(clip.duration_s))
        for i, (start, end) in enumerate(zip(edges, edges[1:])):
            score = PAIN_DAN if i % 2 else REST_DAN
            if end > start:
                rows.append([Path(clip.video).name, clip.subject, str(score), "DAN",
                             f"{start:.3f}", f"{end:.3f}", "demo-rater"])
    table = pd.DataFrame(rows, columns=["video", "subject", "score", "scale", "start_s",
                                        "end_s", "source"], dtype=str)
    return write_table(table, videos / "ratings.csv")


def _fold_count(manifest: pd.DataFrame) -> tuple[int, str]:
    """Folds for the demo and the column they balance: every source must fill every fold."""
    per_source = manifest.groupby("source")["subject"].nunique()
    if per_source.min() >= 2:
        return min(DEMO_FOLDS, int(per_source.min())), "source"
    return min(DEMO_FOLDS, manifest["subject"].nunique()), "none"


def demo(
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Folder for the demo's files (default: NEOPAIN_DATA_DIR/demo).")] = None,
    subjects: Annotated[int, typer.Option(help="Synthetic subjects in the demo cohort.")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workers: Annotated[int, typer.Option(help="Processes for batch work.")] = default_workers(),
    epochs: Annotated[int, typer.Option(help="Training epochs per fold in step 7.")] = 3,
) -> None:
    """Run a synthetic cohort through every stage of neopain that has landed, explaining each."""
    out = out or get_settings().data_dir / "demo"
    console.print(Panel.fit(
        "neopain assesses pain in newborns from facial expressions.\n"
        "This demo uses a [bold]synthetic[/] cohort: drawn faces with known NFCS actions, not real "
        "infants.\nReal studies bring their own consented dataset (see README: data formats).",
        title="neopain demo"))

    _step(1, "synthesize a cohort",
          f"{subjects} subjects from two camera sources (sharp high-resolution, noisy "
          "low-resolution), each image showing NFCS facial actions; pain = 3 or more actions. "
          "Hard cases: crying-like no-pain faces, partial actions, occluders.")
    spec = CohortSpec(subjects=subjects, seed=seed)
    result = synthesize(out, spec, video=True, clips=2, clip=ClipSpec(), workers=workers)

    _step(2, "look at the ground truth",
          "Every image comes with its action masks (where each present action shows) and with "
          f"perception heatmaps of {len(PERSONAS)} observer personas "
          f"({', '.join(p.title for p in PERSONAS)}).")
    manifest = pd.read_csv(result.manifest, dtype=str, keep_default_na=False)
    console.print(_ground_truth_table(manifest))
    hard = Counter(manifest["stimulus"])
    occluded = Counter(o for o in manifest["occluder"] if o)
    console.print(f"stimuli: {dict(hard)}; occluders: {dict(occluded)}", highlight=False)
    sheet = contact_sheet(result.root, result.root / "overview.png")
    timeline = timeline_plot(result.root / "videos", result.root / "timeline.png")
    console.print(f"contact sheet (image, action mask, perception heatmap): {escape(str(sheet))}",
                  highlight=False)
    console.print(f"clip timelines with pain episodes: {escape(str(timeline))}", highlight=False)

    _step(3, "find and crop the faces",
          "Square crops with a margin around each face, from the boxes the synthetic cohort "
          "knows (--detector manifest), with keypoints in crop pixels. Then the detectors "
          "that look at pixels, on a real photograph: the drawn faces are for training, not "
          "for judging detectors.")
    faces.detect(result.manifest, detector="manifest", out=out / "faces", workers=workers)
    sheet = _compare_detectors_on_a_photo(out, out / "faces" / "manifest.csv")
    console.print(f"detections and crops: {escape(str(sheet))}", highlight=False)

    _step(4, "extract frames from the clips (DAN policy)",
          "A synthetic rater scores each clip's pain episodes DAN face 3 and the time between "
          "them 0; frames are taken at 1 per second in pain windows and 1 per 2 s elsewhere, at "
          "the container's timestamps (the M-PAIN protocol).")
    ratings = _rating_windows(result.root / "videos")
    frames.frames(ratings, out=out / "frames")

    _step(5, "split subjects into folds",
          "Leave-some-subjects-out k-fold, each test fold taking its share of "
          "subjects from each source; every fold also has validation subjects. No subject is "
          "ever in two of a fold's train, validation and test sets.")
    folds_file = out / "folds.json"
    k, balance_by = _fold_count(manifest)
    folds.make(result.manifest, out=folds_file, protocol="lsso", k=k, balance_by=balance_by)

    _step(6, "augment fold 0's training images",
          f"{DEMO_COPIES} copies per training image (the published protocol uses 20): rotation, "
          "shear, shift, zoom, brightness and flips, the keypoints moving with the pixels. "
          "Validation and test subjects are never augmented.")
    augmented = out / "augmented"
    augment.augment(result.manifest, folds=folds_file, fold=0, out=augmented, n=DEMO_COPIES,
                    workers=workers, overwrite=True)
    sheet = augment_sheet(augmented / "manifest.csv", out / "augmented.png")
    console.print("originals and copies, keypoints coloured by index (red is always the "
                  f"image-left eye): {escape(str(sheet))}", highlight=False)

    _step(7, "train N-CNN on every fold and evaluate it",
          f"N-CNN (72,602 parameters) learns pain / no pain from the face crops of each fold's "
          f"training subjects and predicts its test subjects only. A short run ({epochs} epochs "
          "per fold) to show the pipeline: `neopain train --epochs 30` trains properly.")
    run = out / "runs" / "ncnn"
    train.train(model="ncnn", manifest=result.manifest, folds=folds_file, out=run,
                epochs=epochs, device="auto", seed=seed)
    evaluate.evaluate(run)

    console.print(Rule("[bold green]demo complete"))
    console.print(f"Everything is in [bold]{escape(str(out))}[/]. Next: "
                  f"open {escape(str(run / 'report.html'))}, or train longer: "
                  f"`neopain train --model ncnn --manifest {escape(str(result.manifest))} "
                  f"--folds {escape(str(folds_file))} --out runs/ncnn --epochs 30`.",
                  highlight=False)
