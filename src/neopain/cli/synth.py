"""``neopain synth``: write a synthetic cohort with ground truth for every stage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from neopain.cli.console import console, progress_bar
from neopain.cli.dataset import print_summary
from neopain.data.manifest import load_manifest
from neopain.data.synthetic import CohortResult, CohortSpec, generate_cohort
from neopain.data.synthetic.cohort import make_subjects
from neopain.data.synthetic.video import ClipSpec, generate_clips


def default_workers() -> int:
    """Worker processes for batch work: the CPUs this process may use, at most 4."""
    return max(1, min(len(os.sched_getaffinity(0)), 4))


def synthesize(out: Path, spec: CohortSpec, *, video: bool, clips: int, clip: ClipSpec,
               workers: int) -> CohortResult:
    """Generate with progress bars and print what was written (shared with ``neopain demo``)."""
    with progress_bar("drawing images") as update:
        result = generate_cohort(out, spec, workers=workers, on_progress=update)
    if video:
        with progress_bar("rendering clips") as update:
            generate_clips(out, make_subjects(spec), clips=clips, clip=clip, seed=spec.seed,
                           on_progress=update)
    print_summary(load_manifest(result.manifest, check_files=True), path=result.manifest,
                  checked_files=True)
    console.print(
        f"wrote {result.images} images of {result.subjects} synthetic subjects to "
        f"[bold]{escape(str(out))}[/]: manifest.csv, masks/, perception.csv, cohort.json"
        + (", videos/" if video else ""), highlight=False)
    return result


def synth(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the cohort into.")],
    subjects: Annotated[int, typer.Option(help="Number of synthetic subjects (>= 2).")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same files.")] = 0,
    min_images: Annotated[int, typer.Option(help="Fewest images per subject.")] = 10,
    max_images: Annotated[int, typer.Option(help="Most images per subject.")] = 16,
    occluder_share: Annotated[float, typer.Option(help="Share of images with an occluder.")] = 0.2,
    rater_noise: Annotated[float, typer.Option(
        help="How far the rater misjudges each action's intensity (standard deviation, 0-1): "
             "labels near the NFCS cut-off then differ from the drawn truth, as raters' do. "
             "0: labels are the drawn truth.")] = 0.0,
    video: Annotated[bool, typer.Option(
        "--video", help="Also render clips with pain episodes.")] = False,
    clips: Annotated[int, typer.Option(
        help="Clips to render with --video (plus one without a face).")] = 4,
    clip_seconds: Annotated[float, typer.Option(help="Length of each clip.")] = 20.0,
    fps: Annotated[float, typer.Option(help="Frame rate of the clips.")] = 10.0,
    workers: Annotated[int, typer.Option(help="Processes drawing images.")] = default_workers(),
) -> None:
    """Write a synthetic cohort (not real infants) with ground truth for every stage.

    Images of subjects from two sources (sharp high-resolution and small noisy low-resolution)
    showing NFCS facial actions; manifest.csv, per-image action masks, perception heatmaps of four
    observer personas, and with --video short clips with a ground-truth timeline.
    """
    spec = CohortSpec(subjects=subjects, seed=seed, images_per_subject=(min_images, max_images),
                      occluder_share=occluder_share, rater_noise=rater_noise)
    synthesize(out, spec, video=video, clips=clips, clip=ClipSpec(clip_seconds, fps),
               workers=workers)
