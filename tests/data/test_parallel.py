"""``ordered_map``: results in input order, a bounded number of items in flight, a worker's
error raised at its place with the rest dropped, and no worker process left behind however the
iteration ends (Ctrl-C included).

Guards what the three hand-written pools it replaced got wrong: all three queued every job at
once (``Executor.map``), and the ``synth`` and ``augment`` pools let Ctrl-C reach their workers
(a traceback from each) and let a dead worker end the command with a raw BrokenProcessPool.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import parallel_jobs
import pytest

from neopain.data.manifest import ManifestError
from neopain.data.parallel import IN_FLIGHT_PER_WORKER, WorkerDiedError, ordered_map
from neopain.errors import NeopainError


@pytest.mark.parametrize("start_method", [None, "spawn"])
def test_results_come_in_input_order_whatever_finishes_first(start_method):
    results = list(ordered_map(parallel_jobs.slow_square, range(16), workers=3,
                               start_method=start_method))
    assert results == [i * i for i in range(16)]
    assert multiprocessing.active_children() == []


def test_one_worker_runs_inline_and_lazily():
    drawn = []

    def items():
        for i in range(5):
            drawn.append(i)
            yield i

    results = ordered_map(parallel_jobs.pid, items(), workers=1)
    assert drawn == []
    assert next(results) == os.getpid()
    assert drawn == [0]


def test_the_initializer_runs_in_each_spawned_worker():
    results = ordered_map(parallel_jobs.started_with, range(6), workers=2,
                          initializer=parallel_jobs.start, initargs=("ready",),
                          start_method="spawn")
    assert list(results) == ["ready"] * 6


def test_items_are_read_as_they_are_submitted_not_all_at_once():
    drawn = []

    def items():
        for i in range(10_000):
            drawn.append(i)
            yield i

    workers = 2
    with closing(ordered_map(parallel_jobs.slow_square, items(), workers=workers)) as results:
        for handed_back, _ in enumerate(results, start=1):
            assert len(drawn) <= IN_FLIGHT_PER_WORKER * workers + handed_back
            if handed_back == 5:
                break
    assert len(drawn) < 20
    assert multiprocessing.active_children() == []


def test_a_workers_error_is_raised_at_its_place_and_the_rest_is_dropped(tmp_path):
    items = [(tmp_path, i, 3) for i in range(200)]
    results = ordered_map(parallel_jobs.mark, items, workers=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(NeopainError, match="item 3 is bad"):
        next(results)
    assert multiprocessing.active_children() == []
    assert len(list(tmp_path.iterdir())) <= 3 + 1 + 2 * IN_FLIGHT_PER_WORKER + 2


def test_a_table_error_in_a_worker_reaches_the_caller_with_its_problems():
    # the bug guarded: TableError could not be rebuilt from its pickle (its constructor takes
    # the path and problems), so a worker's ManifestError ended the command as a broken pool
    # (on Ray: "UnserializableException") instead of naming the file and row
    with pytest.raises(ManifestError) as error:
        list(ordered_map(parallel_jobs.bad_manifest, range(4), workers=2))
    assert error.value.problems == [parallel_jobs.BAD_LABEL]
    assert str(error.value).startswith("manifest0.csv: 1 problem")
    assert multiprocessing.active_children() == []


def test_a_table_error_keeps_its_notes_across_a_process_boundary():
    # the bug guarded: rebuilt from (path, problems) alone, a note or attribute added after
    # it was made was lost on its way back from a worker (FileReadError keeps its own)
    import pickle

    error = ManifestError("manifest0.csv", [parallel_jobs.BAD_LABEL])
    error.add_note("the second list of videos")
    copy = pickle.loads(pickle.dumps(error))
    assert copy.problems == error.problems and str(copy) == str(error)
    assert copy.__notes__ == ["the second list of videos"]


def test_a_dead_worker_is_a_clear_error():
    with pytest.raises(WorkerDiedError, match="a worker process died .*fewer workers than 2"):
        list(ordered_map(parallel_jobs.die, range(6), workers=2))
    assert multiprocessing.active_children() == []


def test_no_worker_is_left_behind_when_stopped_early_again_and_again():
    for _ in range(3):
        with closing(ordered_map(parallel_jobs.slow_square, range(100), workers=2)) as results:
            next(results)
        assert multiprocessing.active_children() == []


CTRL_C = """
import multiprocessing, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
sys.path.insert(0, {tests!r})
import parallel_jobs
from neopain.data.parallel import ordered_map
answers = []
try:
    for answer in ordered_map(parallel_jobs.interrupt_parent, range(50), workers=2,
                              start_method={method!r}):
        answers.append(answer)
except KeyboardInterrupt:
    print("interrupted", answers, multiprocessing.active_children())
else:
    print("not interrupted", answers)
"""


@pytest.mark.parametrize("start_method", [None, "spawn"])
def test_ctrl_c_stops_the_pool_and_workers_are_born_ignoring_it(start_method):
    """In a fresh interpreter that heeds Ctrl-C as one started from a terminal does: a test
    suite started in the background (``make test &``) inherits Ctrl-C ignored, and there this
    test failed with 'DID NOT RAISE KeyboardInterrupt' though it passed alone."""
    script = CTRL_C.format(tests=str(Path(__file__).parents[1]), method=start_method)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=False)
    # interrupted while waiting for item 0, with no worker process left behind
    assert result.stdout.strip() == "interrupted [] []", result.stdout + result.stderr


def test_start_method_is_checked():
    with pytest.raises(NeopainError, match="start_method='thread' is not valid; valid: fork"):
        ordered_map(parallel_jobs.pid, [1], workers=2, start_method="thread")


def test_workers_ignore_ctrl_c():
    results = ordered_map(parallel_jobs.interrupt_parent, [1, 2, 3], workers=2)
    assert list(results) == ["ignored"] * 3


@pytest.mark.parametrize("workers", [1, 2])
def test_the_results_can_be_closed_whether_inline_or_pooled(workers):
    with closing(ordered_map(parallel_jobs.pid, range(10), workers=workers)) as results:
        next(results)
    assert multiprocessing.active_children() == []
