"""``ordered_map`` on the Ray backend keeps the local pool's promises: results in input order,
the initializer once per actor, an item's error raised as itself at its place, a bounded number
in flight; and without Ray installed, ``--backend ray`` is one line naming the extra, never a
traceback (the local backend needs no Ray)."""

from __future__ import annotations

from contextlib import closing

import parallel_jobs
import pytest
from ray_cluster import without_ray

from neopain.data.parallel import LOCAL, Backend, ordered_map
from neopain.errors import NeopainError

RAY = Backend("ray", actors=2)


@pytest.mark.slow
def test_results_come_in_input_order_from_the_actors(ray):
    results = list(ordered_map(parallel_jobs.slow_square, range(16), workers=1, backend=RAY))
    assert results == [i * i for i in range(16)]


@pytest.mark.slow
def test_each_actor_runs_the_initializer_before_its_items(ray):
    results = list(ordered_map(parallel_jobs.started_with, range(6), workers=1, backend=RAY,
                               initializer=parallel_jobs.start, initargs=("ready",)))
    assert results == ["ready"] * 6
    pids = set(ordered_map(parallel_jobs.pid, range(8), workers=1, backend=RAY))
    assert len(pids) == 2  # backend.actors, not workers


@pytest.mark.slow
def test_an_items_error_is_raised_as_itself_after_the_results_before_it(ray, tmp_path):
    # guards: a RayTaskError (a traceback dump) instead of the NeopainError the CLI prints
    got = []
    with pytest.raises(NeopainError, match="item 3 is bad") as raised:
        for result in ordered_map(parallel_jobs.mark, [(tmp_path, i, 3) for i in range(40)],
                                  workers=1, backend=RAY):
            got.append(result)
    assert got == [0, 1, 2]
    assert type(raised.value) is NeopainError and str(raised.value) == "item 3 is bad"
    # at most IN_FLIGHT_PER_WORKER (2) per actor were ever submitted past the last one taken
    assert len(list(tmp_path.iterdir())) <= 3 + 1 + 2 * 2


@pytest.mark.slow
def test_items_are_read_as_they_are_submitted(ray):
    drawn = []

    def items():
        for i in range(100):
            drawn.append(i)
            yield i

    with closing(ordered_map(parallel_jobs.pid, items(), workers=1, backend=RAY)) as results:
        next(results)
    assert len(drawn) <= 1 + 2 * 2


def test_without_ray_the_ray_backend_names_the_extra(monkeypatch):
    # guards: an ImportError traceback where a user must read what to install
    without_ray(monkeypatch)
    from neopain.data.ray_backend import import_ray

    with pytest.raises(NeopainError, match=r'pip install "neopain\[ray\]"'):
        import_ray()
    with pytest.raises(NeopainError, match=r'pip install "neopain\[ray\]"'):
        list(ordered_map(abs, [1], workers=1, backend=RAY))
    assert list(ordered_map(abs, [-1, 2], workers=1, backend=LOCAL)) == [1, 2]


def test_a_backend_is_checked_by_name():
    with pytest.raises(NeopainError, match="backend='dask' is not valid; valid: local, ray"):
        Backend("dask")
    with pytest.raises(NeopainError, match="apply to backend='ray' only"):
        Backend("local", address="auto")
    with pytest.raises(NeopainError, match="actors=0 is not valid"):
        Backend("ray", actors=0)
