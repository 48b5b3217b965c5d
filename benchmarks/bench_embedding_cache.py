"""Head training of vgg16_nb with a frozen backbone: embedding cache vs a forward pass per epoch.

Both runs use the same seed, batches and images (48 synthetic faces at 224×224) and are measured
side by side in one process. Prints the time of each epoch, the per-epoch speed-up after the
first epoch (the cached run's first epoch includes computing the embeddings) and the largest
difference between the two runs' predictions.

    python benchmarks/bench_embedding_cache.py [--images 48] [--epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neopain.training.dataset import FaceDataset
from neopain.data.manifest import load_manifest
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.models import create_model
from neopain.training import Callback, Trainer


class EpochTimer(Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_epoch_start(self, trainer, epoch):
        self._start = time.perf_counter()

    def on_epoch_end(self, trainer, logs):
        self.seconds.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        generate_cohort(root, CohortSpec(subjects=8, seed=0, images_per_subject=(6, 8)),
                        workers=2)
        manifest = load_manifest(root / "manifest.csv")
        cfg = create_model("vgg16_nb").cfg
        rows = np.arange(min(args.images, len(manifest)))
        common = {"size": cfg.input_size, "mean": cfg.mean, "std": cfg.std,
                  "channel_order": cfg.channel_order, "crop_to_face": True}
        train = FaceDataset(manifest, rows=rows[: len(rows) * 3 // 4], **common)
        test = FaceDataset(manifest, rows=rows[len(rows) * 3 // 4:], **common)
        results = {}
        for cache in (True, False):
            torch.manual_seed(0)
            model = create_model("vgg16_nb").freeze()
            timer = EpochTimer()
            trainer = Trainer(model, epochs=args.epochs, batch_size=8, lr=1e-3, cache=cache,
                              callbacks=[timer], device="cpu", seed=0)
            trainer.fit(train, None)
            results[cache] = (timer.seconds, trainer.predict(test))
    (cached, p_cached), (forward, p_forward) = results[True], results[False]
    print(f"images: {len(train)} train + {len(test)} test at {cfg.input_size}, "
          f"torch threads {torch.get_num_threads()}")
    print("epoch seconds, cache:   " + ", ".join(f"{s:.2f}" for s in cached))
    print("epoch seconds, forward: " + ", ".join(f"{s:.2f}" for s in forward))
    later_cached, later_forward = np.mean(cached[1:]), np.mean(forward[1:])
    print(f"per epoch after the first: cache {later_cached:.3f} s, forward {later_forward:.2f} s,"
          f" {later_forward / later_cached:.0f}x faster")
    print(f"max |prediction difference|: {np.abs(p_cached - p_forward).max():.2e}")


if __name__ == "__main__":
    main()
