"""The record rule the bedside and the edge agent share: a snapshot at the first face and at each
change of the shown state (uncertain included), one timeline record per interval, never a frame
without an assessable face."""

from __future__ import annotations

from neopain.faces.base import Face
from neopain.monitor.pipeline import FrameAssessment
from neopain.monitor.recording import RecordPolicy
from neopain.prediction import Prediction


def frame(t: float, state: str | None, *, uncertain: bool = False, face: bool = True,
          assessable: bool = True) -> FrameAssessment:
    prediction = Prediction(0.9 if state == "pain" else 0.1, state or "nopain", 0.5, "m",
                            assessable=assessable) if face else None
    return FrameAssessment(time_s=t, face=Face((0, 0, 10, 10), 1.0) if face else None,
                           prediction=prediction, smoothed=0.5, state=state, changed=False,
                           latency_ms=1.0, uncertain=uncertain)


def run(policy: RecordPolicy, frames: list[FrameAssessment]) -> list[tuple[float, bool]]:
    out = []
    for result in frames:
        due, snapshot = policy.due(result)
        if due:
            policy.recorded(result, snapshot=snapshot)
            out.append((result.time_s, snapshot))
    return out


def test_snapshots_at_each_change_and_timeline_per_interval():
    frames = ([frame(t / 10, "nopain") for t in range(0, 25)]
              + [frame(2.5, None, face=False), frame(2.6, "nopain", assessable=False)]
              + [frame(t / 10, "pain") for t in range(27, 40)]
              + [frame(4.0, "pain", uncertain=True), frame(4.1, "pain")])
    assert run(RecordPolicy(interval_s=1.0), frames) == [
        (0.0, True), (1.0, False), (2.0, False), (2.7, True), (3.7, False), (4.0, True),
        (4.1, True)]


def test_a_resumed_stream_takes_no_snapshot_for_the_state_it_left():
    policy = RecordPolicy(interval_s=60.0, last_state="pain")
    assert run(policy, [frame(0.0, "pain"), frame(0.1, "pain"), frame(0.2, "nopain")]) == [
        (0.0, False), (0.2, True)]
