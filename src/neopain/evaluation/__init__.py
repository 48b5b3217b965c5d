"""Evaluation of training runs: metrics, statistics over folds and between runs, reports."""

from neopain.runs.metrics import METRICS, binary_metrics, confusion, metric_notes, roc_points
from neopain.evaluation.report import (
    Evaluation,
    compare,
    evaluate_run,
    write_comparison,
    write_report,
)
from neopain.runs import FoldRun, Run, RunError, load_run
from neopain.evaluation.stats import Comparison, compare_runs, confidence_interval, mean_std

__all__ = [
    "METRICS", "Comparison", "Evaluation", "FoldRun", "Run", "RunError", "binary_metrics",
    "compare", "compare_runs", "confidence_interval", "confusion", "evaluate_run", "load_run",
    "mean_std", "metric_notes", "roc_points", "write_comparison", "write_report",
]  # fmt: skip
