"""How fast `neopain synth --subjects 30` writes its cohort (target: under 60 s on 2 cores).

Runs the acceptance cohort with 1 and 2 worker processes side by side and prints the figures.
Usage: .venv/bin/python benchmarks/bench_synth.py [--subjects 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from neopain.data.synthetic import CohortSpec, generate_cohort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    spec = CohortSpec(subjects=args.subjects, seed=args.seed)
    print(f"synthetic cohort: {args.subjects} subjects, seed {args.seed}")
    print(f"{'workers':>7} {'images':>7} {'seconds':>8} {'images/s':>9} {'ms/image':>9}")
    seconds = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            result = generate_cohort(out, spec, workers=workers)
            seconds[workers] = time.perf_counter() - start
        print(f"{workers:>7} {result.images:>7} {seconds[workers]:>8.1f} "
              f"{result.images / seconds[workers]:>9.1f} "
              f"{1000 * seconds[workers] / result.images:>9.1f}")
    print(f"speed-up with 2 workers: {seconds[1] / seconds[2]:.2f}x")


if __name__ == "__main__":
    main()
