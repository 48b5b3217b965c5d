"""Count what every input of a surface does, and let hypothesis shrink each new failure once.

``Campaign.run`` first tries a fixed corpus, then draws ``examples`` inputs from a strategy.
Every outcome is tallied. The first input of a new failure signature makes the hypothesis run
fail on purpose, so hypothesis shrinks it to a minimal input of the same signature (within a
budget); then a new run with the next seed goes on with the remaining examples. Hangs and
bombs are not shrunk (each try costs seconds).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from fuzz.sandbox import Outcome

SHRINK_TRIES = 150
SHRINK_S = 60.0
NOT_SHRUNK = ("hang", "bomb")


class _NewFailure(Exception):
    """Raised inside hypothesis to make it shrink the input."""


class _Enough(BaseException):
    """Ends shrinking when its budget is spent (hypothesis does not catch it)."""


@dataclass
class Finding:
    """One failure signature: how often it happened, the first input and the smallest one."""

    outcome: Outcome
    first: object
    smallest: object
    count: int = 0


@dataclass
class Tally:
    """What a surface's inputs did."""

    tried: int = 0
    goal: int = 0
    problems: Counter = field(default_factory=Counter)
    findings: dict[str, Finding] = field(default_factory=dict)
    peak_mb: float = 0.0
    unsent: int = 0

    def add(self, value: object, outcome: Outcome) -> bool:
        """Count an outcome; True when it is the first of a new failure signature."""
        self.tried += 1
        self.peak_mb = max(self.peak_mb, outcome.peak_mb)
        self.unsent += outcome.signature == "unsent"
        if outcome.logged and outcome.problem != "traceback":
            self.problems["traceback"] += 1  # a 5xx whose traceback the server logged
        if outcome.problem is None:
            return False
        self.problems[outcome.problem] += 1
        key = f"{outcome.problem}: {outcome.signature}"
        if key in self.findings:
            self.findings[key].count += 1
            return False
        self.findings[key] = Finding(outcome, value, value, 1)
        return True


@dataclass
class Campaign:
    """Runs ``check`` over a surface's inputs.

    Args:
        check: runs one input, returns its ``Outcome``.
        on_input: called after each counted input with the tally (progress bars).
    """

    check: Callable[[object], Outcome]
    on_input: Callable[[Tally], None] = lambda tally: None
    tally: Tally = field(default_factory=Tally)

    def run(self, strategy: st.SearchStrategy, *, examples: int, corpus: dict[str, object],
            seed_value: int = 0) -> Tally:
        goal = self.tally.goal = self.tally.tried + len(corpus) + examples
        for value in corpus.values():
            self._count(value, self.check(value))
        for round_ in range(1000):
            left = goal - self.tally.tried
            if left <= 0:
                break
            before = self.tally.tried
            self._round(strategy, left, seed_value * 1000 + round_)
            if self.tally.tried == before:
                break  # the strategy has nothing new to give
        return self.tally

    def _count(self, value: object, outcome: Outcome) -> bool:
        new = self.tally.add(value, outcome)
        self.on_input(self.tally)
        return new and outcome.problem not in NOT_SHRUNK

    def _round(self, strategy: st.SearchStrategy, examples: int, seed_value: int) -> None:
        target: dict[str, object] = {}

        @settings(max_examples=examples, database=None, deadline=None, derandomize=False,
                  phases=[Phase.generate, Phase.shrink], print_blob=False,
                  suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
        @seed(seed_value)
        @given(strategy)
        def probe(value: object) -> None:
            if target and (target["tries"] >= SHRINK_TRIES
                           or time.monotonic() - target["started"] > SHRINK_S):
                raise _Enough()
            outcome = self.check(value)
            key = f"{outcome.problem}: {outcome.signature}"
            if target:
                target["tries"] += 1
                failing = key == target["key"]
                if failing:
                    self.tally.findings[key].smallest = value
            elif failing := self._count(value, outcome):
                target.update(key=key, tries=0, started=time.monotonic())
            if failing:  # one raise statement: hypothesis shrinks failures of one origin
                raise _NewFailure(key)

        try:
            probe()
        except (_NewFailure, _Enough):
            pass
        except Exception:  # hypothesis' own complaints about a shrink (a flaky failure ...)
            if not target:
                raise
