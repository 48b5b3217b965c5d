"""Numbers as the reports and the terminal show them: 3 decimals, 'n/a' for NaN."""

from __future__ import annotations

import math

from neopain.runs.metrics import LOWER_IS_BETTER


def format_mean_std(mean: float, std: float, *, digits: int = 3) -> str:
    """'0.912 ± 0.031'; 'n/a' for NaN parts."""
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± " + ("n/a" if math.isnan(std) else f"{std:.{digits}f}")


def format_number(value: float, *, digits: int = 3) -> str:
    """A rounded number, or 'n/a' for NaN."""
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def format_ci(low: float, high: float, *, digits: int = 3) -> str:
    """'[0.880, 0.944]'; 'n/a' when undefined."""
    if math.isnan(low):
        return "n/a"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def format_p(p: float) -> str:
    """A p-value for people: '<0.001', '0.034', or 'n/a'."""
    if math.isnan(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_share(value: float) -> str:
    """A share as a percentage with one decimal: '91.3%'; 'n/a' for NaN."""
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}%"


def metric_label(name: str) -> str:
    """A metric's name in a table, with '↓' when lower is better (an error: Brier, NLL, ECE)."""
    return f"{name} ↓" if name in LOWER_IS_BETTER else name
