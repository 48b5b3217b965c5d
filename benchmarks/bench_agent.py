"""Issue 21's figures in one run: the edge agent, its face tracking, and the server ingesting
many agents.

1. ``agent_device.device_figures``: the agent's pipeline on ONE core, frames/s and resident
   memory, with ``nfcs`` and with an int8 N-CNN (goal >= 30 frames/s each).
2. ``agent_tracking.tracking_figures``: the pipeline end to end (decode excluded) on 2 cores with
   ``nfcs`` on a moving real-face clip, following the face vs detecting it in every frame,
   interleaved, side by side; the share of frames whose held state differs (goal >= 150
   frames/s with tracking).
3. ``agent_ingest.ingest_figures``: the server (its own process) ingesting N simulated agents at
   one assessment a second plus snapshots and heartbeats; ingest p95 <= 100 ms, 0 lost, 0
   duplicated, checked in the database.

    python benchmarks/bench_agent.py [--agents 64] [--seconds 30] [--frames 600] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_device import GOAL_FPS, device_figures  # noqa: E402
from agent_ingest import TARGET_P95_MS, ingest_figures  # noqa: E402
from agent_tracking import GOAL_FPS as TRACKING_GOAL_FPS  # noqa: E402
from agent_tracking import tracking_figures  # noqa: E402


def rows(device: dict, tracking: dict, ingest: dict) -> list[tuple[str, str, str, bool]]:
    """(what, figure, goal, met) for the table."""
    out = []
    for name in ("nfcs", "ncnn-int8"):
        fig = device[name]
        out.append((f"agent, 1 core, {name}", f"{fig['fps']:.1f} frames/s, "
                    f"{fig['ms_per_frame']:.1f} ms/frame, peak {fig['peak_rss_mb']:.0f} MB",
                    f">= {GOAL_FPS:.0f} frames/s", fig["fps"] >= GOAL_FPS))
    out.append(("pipeline, 2 cores, nfcs: tracking", f"{tracking['tracking_fps']:.1f} frames/s",
                f">= {TRACKING_GOAL_FPS:.0f} frames/s",
                tracking["tracking_fps"] >= TRACKING_GOAL_FPS))
    out.append(("pipeline, 2 cores, nfcs: detector every frame",
                f"{tracking['per_frame_fps']:.1f} frames/s (tracking x{tracking['ratio']:.2f})",
                "side by side", True))
    out.append(("held state differing (tracking vs per frame)",
                f"{100 * tracking['differing']:.1f}% of frames; box IoU "
                f"{tracking['iou_tracking']:.3f} vs {tracking['iou_per_frame']:.3f}",
                "as accurate", tracking["differing"] <= 0.03))
    out.append((f"server ingest, {ingest['agents']} agents",
                f"p50 {ingest['ingest_p50_ms']:.0f} ms, p95 {ingest['ingest_p95_ms']:.0f} ms, "
                f"max {ingest['ingest_max_ms']:.0f} ms; {ingest['requests_per_s']:.0f} req/s",
                f"p95 <= {TARGET_P95_MS:.0f} ms", ingest["ingest_p95_ms"] <= TARGET_P95_MS))
    out.append(("records made / stored / lost / twice",
                f"{ingest['records_made']} / {ingest['records_stored']} / {ingest['lost']} / "
                f"{ingest['duplicated']} ({ingest['snapshots_stored']} snapshots)", "0 lost",
                ingest["lost"] == 0 and ingest["duplicated"] == 0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0, help="the ingest run")
    parser.add_argument("--frames", type=int, default=600, help="the tracking clip")
    parser.add_argument("--device-frames", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console()
    with console.status("the agent on one core…"):
        device = device_figures(frames=args.device_frames)
    with console.status("tracking vs per-frame detection…"):
        tracking = tracking_figures(frames=args.frames)
    with console.status(f"{args.agents} agents into one server…"):
        ingest = ingest_figures(agents=args.agents, seconds=args.seconds)
    if args.json:
        print(json.dumps({"device": device, "tracking": tracking, "ingest": ingest}, indent=2))
        return
    table = Table(title=f"bench_agent ({device['cpu']})")
    for column in ("what", "figure", "goal", "met"):
        table.add_column(column)
    verdicts = rows(device, tracking, ingest)
    for what, figure, goal, met in verdicts:
        table.add_row(what, figure, goal, "yes" if met else "[red]NO[/]")
    console.print(table)
    console.print("all met" if all(met for *_, met in verdicts) else "[red]not all met[/]")


if __name__ == "__main__":
    main()
