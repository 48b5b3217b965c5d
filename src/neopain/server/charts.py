"""The profile's charts as SVG, drawn on the server with matplotlib (no pyplot, no scripts):
assessments and pain share by day and by hour of day, and one session's P(pain) timeline in
clock time. Text stays text in the SVG (readable, searchable, scaled by the browser), and the
same inputs give the same bytes. The server draws them in a separate process
(``server.chart_worker``): plain values in, SVG bytes out."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PAIN = "#c0392b"
NOPAIN = "#2e86c1"
COUNT = "#95a5a6"
UNCERTAIN = "#5b2a9e"  # the live page's uncertain violet


def _figure(width: float = 7.5, height: float = 2.8) -> tuple[Figure, Axes]:
    # imported here: matplotlib takes a moment to load and only chart requests need it
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return figure, figure.add_subplot()


def _svg(figure: Figure) -> bytes:
    from matplotlib import rc_context

    buffer = io.BytesIO()
    # a fixed salt: clip-path ids follow from the content, so the same rows give the same bytes
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "neopain"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_axis_off()


def share_table(times: Sequence[datetime], labels: Sequence[str | None], *, by: str,
                zone: tzinfo | None) -> pd.DataFrame:
    """Assessments with a face, and the share labelled pain, per day (``by="day"``, index
    ``YYYY-MM-DD``) or per hour of day (``by="hour"``, index 0–23), in ``zone``."""
    if by not in ("day", "hour"):
        raise ValueError(f"by={by!r}; valid: day, hour")
    frame = pd.DataFrame({"time": [t.astimezone(zone) for t in times], "label": list(labels)})
    frame = frame[frame["label"].notna()]
    key = (frame["time"].map(lambda t: t.strftime("%Y-%m-%d")) if by == "day"
           else frame["time"].map(lambda t: t.hour))
    table = frame.assign(key=key, pain=frame["label"] == "pain").groupby("key").agg(
        assessments=("pain", "size"), pain_share=("pain", "mean"))
    if by == "hour":
        table = table.reindex(range(24), fill_value=0)
    return table


def share_chart(times: Sequence[datetime], labels: Sequence[str | None], *, by: str,
                zone: tzinfo | None) -> bytes:
    """Bars: assessments per day or hour; line: the share of them labelled pain (SVG)."""
    from matplotlib.ticker import MaxNLocator

    table = share_table(times, labels, by=by, zone=zone)
    figure, ax = _figure()
    if table["assessments"].sum() == 0:
        _empty(ax, "No assessments yet")
        return _svg(figure)
    positions = range(len(table))
    ax.bar(positions, table["assessments"], color=COUNT, label="assessments")
    ax.set_ylabel("assessments")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # a count: no "2.5 assessments"
    ax.set_xticks(list(positions), [str(k) for k in table.index],
                  rotation=45 if by == "day" else 0, fontsize=8)
    ax.set_xlabel("day" if by == "day" else "hour of day")
    share = ax.twinx()
    shown = table["assessments"] > 0
    share.plot([p for p, s in zip(positions, shown) if s], table.loc[shown, "pain_share"],
               color=PAIN, marker="o", label="pain share")
    share.set_ylim(0, 1.05)
    share.set_ylabel("pain share", color=PAIN)
    share.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax.set_title(f"Assessments and pain share by {by}", fontsize=10)
    figure.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return _svg(figure)


def timeline_chart(times: Sequence[datetime], probs: Sequence[float | None],
                   smoothed: Sequence[float | None], states: Sequence[str | None],
                   snapshots: Sequence[bool], *, zone: tzinfo | None,
                   threshold: float = 0.5) -> bytes:
    """One session: P(pain) per saved frame (dots; violet rings where the page said
    ``uncertain``), the smoothed value (line) and the snapshots at changes of state (vertical
    lines, coloured by the new state, dashed violet for uncertain), against the clock time of
    each frame in ``zone`` (None: the server's local zone) (SVG). ``states``: what each frame
    showed, ``pain``, ``nopain`` or ``uncertain``."""
    from matplotlib.dates import AutoDateLocator, DateFormatter

    figure, ax = _figure(height=2.4)
    if not times:
        _empty(ax, "No assessments in this session")
        return _svg(figure)
    local = [t.astimezone(zone) for t in times]
    # wall-clock times as naive values, drawn and labelled as they are (no second conversion)
    x = [t.replace(tzinfo=None) for t in local]
    sure = [p if p is not None and s != "uncertain" else float("nan")
            for p, s in zip(probs, states)]
    ax.scatter(x, sure, s=8, color=COUNT, label="P(pain)")
    unsure = [p if p is not None and s == "uncertain" else float("nan")
              for p, s in zip(probs, states)]
    if any(s == "uncertain" for s in states):
        ax.scatter(x, unsure, s=14, facecolors="none", edgecolors=UNCERTAIN,
                   label="uncertain (look at the baby)")
    ax.plot(x, [s if s is not None else float("nan") for s in smoothed], color="black",
            lw=1.2, label="smoothed")
    for position, state, snap in zip(x, states, snapshots):
        if snap:
            ax.axvline(position, lw=1.5, alpha=0.8,
                       color={"pain": PAIN, "uncertain": UNCERTAIN}.get(state, NOPAIN),
                       ls="--" if state == "uncertain" else "-")
    if x[0] == x[-1]:  # one moment: a minute around it, so the axis has clock times
        ax.set_xlim(x[0] - timedelta(seconds=30), x[0] + timedelta(seconds=30))
    ax.xaxis.set_major_locator(AutoDateLocator(minticks=3, maxticks=8))
    several_days = local[-1].date() != local[0].date()
    ax.xaxis.set_major_formatter(DateFormatter("%m-%d %H:%M" if several_days else "%H:%M:%S",
                                               tz=timezone.utc))
    ax.axhline(threshold, color="0.5", ls="--", lw=0.8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"clock time, {local[0]:%Y-%m-%d} (UTC{local[0]:%z})")
    ax.set_ylabel("P(pain)")
    ax.legend(loc="upper right", fontsize=7)
    return _svg(figure)
