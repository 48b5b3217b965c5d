"""MC-dropout mutual information on occluded vs unoccluded synthetic faces (issue 20, point 4).

The acceptance: over one fold's test images, mutual information with an occluder over the face
is higher than on the same image without it (paired Wilcoxon signed-rank test, one-sided,
p < 0.05).

A synthetic cohort is drawn without occluders and an N-CNN trained briefly on one lsso fold
with dropout 0.5 after its centre and right branches (``model_args``; the published 0.1 barely
moves its passes, so their disagreement says little). The occluders are then faces the network
has never seen: what mutual information should flag. Each test image is drawn again twice from
its own random stream (the cohort's plan, ``cohort.plan_images``): once as the cohort drew it
but with no occluder, once with the synthetic module's occluder (pacifier, blanket edge or
hand, in turn) drawn over the face; the face, camera, lighting and noise of both are
identical. Both crops (the same face box) go through ``RunPredictor`` with ``--passes``
MC-dropout passes. The verdict is "void" when the trained network gives every face the same
P(pain) (training collapsed).

    python benchmarks/bench_uncertainty.py [--subjects 48] [--k 3] [--epochs 15] [--passes 30]
        [--occluders pacifier,blanket,hand] [--train-occluders 0.0] [--model ncnn]
        [--dropout 0.5] [--lr 0.002] [--seed 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import wilcoxon

from neopain.data.folds import make_folds, save_folds
from neopain.data.manifest import load_manifest, sha256_file
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.data.synthetic.canvas import Canvas
from neopain.data.synthetic.cohort import draw_scene, make_subjects, plan_images
from neopain.data.synthetic.scene import (
    OCCLUDERS,
    face_box_px,
    finish,
    occlude,
)
from neopain.export.torch_runtime import RunPredictor
from neopain.training import TrainConfig, run_cv


def draw_pair(job, spec: CohortSpec, occluder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The job's image without and with ``occluder`` (BGR uint8 each) and its face box.

    Drawn as the cohort draws it (``cohort.draw_scene``), so the unoccluded image is the
    cohort's own when the cohort drew it without an occluder; the occluder draws from a stream
    of its own and the camera of both images from the same state, so the two differ by the
    occluder alone.
    """
    scene = draw_scene(job, spec)
    rng, canvas, identity = scene.rng, scene.canvas, job.subject.identity
    if scene.occluder:  # the cohort's own occluder: drawn aside, so its draws are made, left out
        occlude(Canvas(canvas.image.copy(), canvas.pose), rng, identity, scene.occluder)
    clean = canvas.image.copy()
    occlude(canvas, np.random.default_rng([*job.seed, 99]), identity, occluder)
    camera = rng.bit_generator.state
    clean_image = finish(clean, rng, job.subject.source)
    rng.bit_generator.state = camera
    return clean_image, finish(canvas.image, rng, job.subject.source), face_box_px(
        canvas.pose, scene.layout, job.subject.source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=48)
    parser.add_argument("--images-per-subject", type=int, nargs=2, default=(8, 12),
                        metavar=("LO", "HI"))
    parser.add_argument("--k", type=int, default=3, help="lsso folds (fold 0 is used)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--passes", type=int, default=30)
    parser.add_argument("--occluders", default=",".join(OCCLUDERS),
                        help="occluder kinds drawn in turn over the test images")
    parser.add_argument("--train-occluders", type=float, default=0.0,
                        help="share of cohort images with an occluder (training included)")
    parser.add_argument("--model", default="ncnn",
                        help="a registered network with dropout: ncnn (dropout 0.1 after its "
                             "centre and right branches), mobilenet_nb (0.2 before its FC) ...")
    parser.add_argument("--dropout", type=float, default=0.5,
                        help="dropout rate (trained and sampled, as model_args); a negative "
                             "value: the registry's (N-CNN's published 0.1)")
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="keep the cohort and run here")
    args = parser.parse_args()
    kinds = args.occluders.split(",")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) if args.out is None else args.out
        root.mkdir(parents=True, exist_ok=True)
        spec = CohortSpec(subjects=args.subjects, seed=args.seed,
                          images_per_subject=tuple(args.images_per_subject),
                          occluder_share=args.train_occluders)
        generate_cohort(root, spec, workers=2)
        manifest = root / "manifest.csv"
        save_folds(make_folds(load_manifest(manifest), protocol="lsso", k=args.k,
                              val_share=0.0, manifest_sha256=sha256_file(manifest)),
                   root / "folds.json")
        run_cv(TrainConfig(model=args.model,
                           model_args={} if args.dropout < 0 else {"dropout": args.dropout},
                           manifest=manifest,
                           folds=root / "folds.json", out=root / "run", fold=0,
                           epochs=args.epochs, batch_size=16, lr=args.lr, early_stopping=0,
                           device="cpu", seed=args.seed))
        trained = time.perf_counter()
        with RunPredictor(root / "run" / "fold_0", mc_passes=args.passes) as predictor:
            test = set(predictor.folds_[0].test_subjects)
            jobs = [job for job in plan_images(spec, make_subjects(spec)) if job.subject.id in test]
            clean, occluded, labels = [], [], []
            for index, job in enumerate(jobs):
                image, covered, box = draw_pair(job, spec, kinds[index % len(kinds)])
                clean.append(predictor.crop.cut(image, box=box))
                occluded.append(predictor.crop.cut(covered, box=box))
                labels.append(job.stimulus == "pain")  # pain stimuli: the pain-labelled faces
            bare, hidden = predictor.summarize(clean), predictor.summarize(occluded)
    seconds = time.perf_counter() - started
    mi_bare, mi_hidden = bare.mutual_information, hidden.mutual_information
    test_result = wilcoxon(mi_hidden, mi_bare, alternative="greater")
    kind_of = np.array([kinds[i % len(kinds)] for i in range(len(jobs))])
    rate = "the registry's" if args.dropout < 0 else f"{args.dropout:g}"
    print(f"{args.model} (dropout {rate}) fold 0 of lsso k={args.k}, {args.subjects} "
          f"subjects, {args.epochs} epochs; {args.passes} MC-dropout passes; occluders "
          f"{', '.join(kinds)}; {args.train_occluders:.0%} of cohort images occluded")
    print(f"n = {len(jobs)} test images ({len(test)} subjects); accuracy unoccluded "
          f"{np.mean((bare.mean >= 0.5) == np.array(labels)):.2f}, occluded "
          f"{np.mean((hidden.mean >= 0.5) == np.array(labels)):.2f}; median spread of a face's "
          f"passes (std of P) {np.median(bare.spread):.4f}")
    print(f"median MI unoccluded {np.median(mi_bare):.4f} nats, occluded "
          f"{np.median(mi_hidden):.4f} nats; mean {mi_bare.mean():.4f} vs {mi_hidden.mean():.4f}")
    for kind in kinds:
        chosen = kind_of == kind
        print(f"  {kind}: n = {chosen.sum()}, median MI {np.median(mi_bare[chosen]):.4f} → "
              f"{np.median(mi_hidden[chosen]):.4f}, higher occluded in "
              f"{np.mean(mi_hidden[chosen] > mi_bare[chosen]):.0%}")
    pain = np.array(labels)
    for name, chosen in (("pain faces", pain), ("no-pain faces", ~pain)):
        print(f"  {name}: n = {chosen.sum()}, median P(pain) {np.median(bare.mean[chosen]):.3f} → "
              f"{np.median(hidden.mean[chosen]):.3f}, median MI "
              f"{np.median(mi_bare[chosen]):.5f} → {np.median(mi_hidden[chosen]):.5f}, higher "
              f"occluded in {np.mean(mi_hidden[chosen] > mi_bare[chosen]):.0%}")
    entropy_test = wilcoxon(hidden.entropy, bare.entropy, alternative="greater")
    print(f"predictive entropy (total uncertainty): median {np.median(bare.entropy):.4f} → "
          f"{np.median(hidden.entropy):.4f} nats, p = {entropy_test.pvalue:.3g}")
    print(f"share of images with higher MI occluded: {np.mean(mi_hidden > mi_bare):.1%}")
    print(f"paired Wilcoxon signed-rank (occluded > unoccluded): statistic "
          f"{test_result.statistic:.1f}, p = {test_result.pvalue:.3g}")
    if np.ptp(bare.mean) < 1e-3:  # a collapsed network: every face the same, passes equal
        verdict = ("void: the network gives every face the same P(pain) (training collapsed); "
                   "rerun with another --seed or --lr")
    else:
        verdict = f"{'met' if test_result.pvalue < 0.05 else 'not met'} (p < 0.05)"
    print(f"verdict: {verdict}")
    print(f"time: {seconds:.0f} s wall ({trained - started:.0f} s cohort + training), "
          f"{torch.get_num_threads()} torch threads")


if __name__ == "__main__":
    main()
