"""``ordered_map`` on the Ray backend keeps the local pool's promises: results in input order,
the initializer once per actor, an item's error raised as itself at its place, a bounded number
in flight; and without Ray installed, ``--backend ray`` is one line naming the extra, never a
traceback (the local backend needs no Ray)."""

from __future__ import annotations

from contextlib import closing

import parallel_jobs
import pytest
from ray_cluster import ray_or_skip, without_ray

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


@pytest.mark.slow
def test_each_actor_reserves_as_many_cpus_as_it_runs_threads(ray):
    # guards: actors reserving one CPU each while running N threads, so that a node of c CPUs
    # ran c actors of N threads each
    def reserved(backend: Backend) -> dict[int, float]:
        return dict(ordered_map(parallel_jobs.reserved_cpus, range(8), workers=1,
                                backend=backend))

    assert sorted(reserved(Backend("ray")).values()) == [1.0, 1.0]  # 2 CPUs: 2 actors
    assert list(reserved(Backend("ray", actor_threads=2)).values()) == [2.0]  # room for one


@pytest.mark.slow
@pytest.mark.parametrize(("actors", "threads", "refusal"), [
    (None, 3, "each Ray actor runs on 3 threads and so takes 3 CPUs, but the cluster's "
              "largest node has 2; valid: 1 to 2 threads per actor (assess: --threads; "
              "explain: OMP_NUM_THREADS, torch's threads)"),
    (2, 2, "--workers 2: the Ray cluster has room for 1 actor of 2 CPUs on one node; valid: "
           "1 to 1"),
    (3, 1, "--workers 3: the Ray cluster has room for 2 actors of one CPU; valid: 1 to 2"),
])
def test_actors_the_cluster_cannot_hold_are_refused_not_left_waiting(ray, actors, threads,
                                                                      refusal):
    backend = Backend("ray", actors=actors, actor_threads=threads)
    with pytest.raises(NeopainError) as raised:
        list(ordered_map(abs, [1], workers=1, backend=backend))
    assert str(raised.value) == refusal


class Nodes:
    """What ``ray.nodes()`` says of a cluster of nodes with these CPUs (one dead node too)."""

    def __init__(self, *cpus: int) -> None:
        self.cpus = cpus

    def nodes(self) -> list[dict]:
        return [*({"Alive": True, "Resources": {"CPU": float(c)} if c else {}}
                  for c in self.cpus), {"Alive": False, "Resources": {"CPU": 64.0}}]


def test_an_actor_takes_its_cpus_on_one_node_of_the_live_ones():
    # guards: room counted from the cluster's CPU total (two nodes of 3 CPUs "hold" three
    # actors of 2, and the third waits for ever), or a dead node counted
    from neopain.data.ray_backend import _actor_count

    assert _actor_count(Nodes(3, 3), Backend("ray", actor_threads=2)) == 2
    assert _actor_count(Nodes(3, 3), Backend("ray")) == 6
    with pytest.raises(NeopainError, match="room for 2 actors of 2 CPUs on one node; valid: "
                                           "1 to 2"):
        _actor_count(Nodes(3, 3), Backend("ray", actors=3, actor_threads=2))
    with pytest.raises(NeopainError, match="no live node with CPUs"):  # not a ZeroDivision
        _actor_count(Nodes(0), Backend("ray"))


def test_nothing_to_do_on_ray_joins_or_starts_no_cluster(monkeypatch):
    # guards: a rerun with everything done (or an empty list) starting a Ray for nothing; the
    # check is ordered_map's, for every command
    ray_or_skip()  # ordered_map refuses the Ray backend where Ray is not installed
    from neopain.data import ray_backend

    def no_session(backend):
        raise AssertionError("a Ray session was opened for no items")

    monkeypatch.setattr(ray_backend, "ray_session", no_session)
    assert list(ordered_map(str, [], workers=1, backend=Backend("ray"))) == []


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
    with pytest.raises(NeopainError, match="actor_threads=2 apply to backend='ray' only"):
        Backend("local", actor_threads=2)
    for threads in (0, True, 1.5):
        with pytest.raises(NeopainError, match=f"actor_threads={threads!r} is not valid"):
            Backend("ray", actor_threads=threads)
