"""Size and CPU speed of every registered model, and of the bedside candidates.

For each model at its input size: parameters, fp32 size in MB, and the median milliseconds
of one forward pass on a 1×3×H×W image with torch on 2 threads, after warm-up. The
MobileNetV2 candidates (width × input size) show why ``mobilenet_nb`` is width 0.5 at 128.

    python benchmarks/bench_bedside_models.py [--repeats 30] [--threads 2] [--no-candidates]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from neopain.models import create_model, list_models
from neopain.models.mobile import MobileNetV2


def milliseconds_per_image(model: torch.nn.Module, size: tuple[int, int], *,
                           repeats: int) -> float:
    """Median ms of ``model`` on one 1×3×H×W image, after 5 warm-up passes."""
    model.eval()
    image = torch.randn(1, 3, *size)
    times = []
    with torch.inference_mode():
        for _ in range(5):
            model(image)
        for _ in range(repeats):
            start = time.perf_counter()
            model(image)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(name: str, model: torch.nn.Module, size: tuple[int, int], *,
            repeats: int) -> tuple[str, str, int, float, float]:
    params = sum(p.numel() for p in model.parameters())
    megabytes = sum(t.numel() * t.element_size()
                    for t in [*model.parameters(), *model.buffers()]) / 1e6
    return (name, f"{size[0]}×{size[1]}", params, megabytes,
            milliseconds_per_image(model, size, repeats=repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-candidates", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rows = []
    for name in list_models():
        model = create_model(name)
        rows.append(measure(name, model, model.cfg.input_size, repeats=args.repeats))
    if not args.no_candidates:
        for width in (0.35, 0.5, 0.75, 1.0):
            for side in (96, 112, 128, 160, 224):
                rows.append(measure(f"candidate mobilenetv2 ×{width}", MobileNetV2(width=width),
                                    (side, side), repeats=args.repeats))

    table = Table(title=f"forward pass, 1 image, torch {torch.__version__}, "
                        f"{args.threads} threads, median of {args.repeats}")
    for column in ("model", "input", "params", "MB (fp32)", "ms / image"):
        table.add_column(column, justify="left" if column in ("model", "input") else "right")
    for name, size, params, megabytes, ms in rows:
        table.add_row(name, size, f"{params:,}", f"{megabytes:.2f}", f"{ms:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
