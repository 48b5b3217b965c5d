"""One ordered parallel map over worker processes, for the batch commands that write files per
item (``synth``, ``faces detect``, ``augment``): ``ordered_map``; and the ``Backend`` it runs
on: this machine's processes (``local``, the default) or the actors of a Ray cluster (``ray``,
``data.ray_backend``, which loads Ray only when it is chosen)."""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from neopain.errors import NeopainError

Item = TypeVar("Item")
Result = TypeVar("Result")

IN_FLIGHT_PER_WORKER = 2
"""Items submitted but not yet handed back, per worker: enough to keep every worker busy."""

START_METHODS = ("fork", "spawn", "forkserver")
BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Backend:
    """Where the batch commands run their items and folds.

    Attributes:
        kind: ``local`` (this machine's processes) or ``ray`` (a Ray cluster's actors and tasks).
        address: ``ray`` only: None starts a Ray on this machine for the command (or joins the
            one this process already started); ``auto`` joins the cluster this machine belongs
            to; ``ray://host:port`` a remote cluster's client server.
        actors: ``ray`` only: the actors ``ordered_map`` starts; None: as many as the
            cluster's nodes have room for.
        actor_threads: ``ray`` only: the threads each actor's work runs on, and so the CPUs
            it reserves (Ray places an actor where that many are free): a command whose
            actors run ONNX Runtime or torch on N threads says N, so that actors sharing a
            node do not run more threads than it has cores.

    Raises:
        NeopainError: a ``kind`` that is not one of ``BACKENDS``, an address, actor count or
            actor threads given to the local backend, or actors or actor threads below 1.
    """

    kind: str = "local"
    address: str | None = None
    actors: int | None = None
    actor_threads: int = 1

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise NeopainError(f"backend={self.kind!r} is not valid; valid: "
                               f"{', '.join(BACKENDS)}")
        if self.kind == "local" and (self.address is not None or self.actors is not None
                                     or self.actor_threads != 1):
            raise NeopainError(f"address={self.address!r}, actors={self.actors!r} and "
                               f"actor_threads={self.actor_threads!r} apply to backend='ray' "
                               "only; valid with 'local': None, None and 1")
        if self.actors is not None and not _whole_at_least_one(self.actors):
            raise NeopainError(f"actors={self.actors!r} is not valid; valid: a whole number "
                               ">= 1, or None for as many as the cluster has room for")
        if not _whole_at_least_one(self.actor_threads):
            raise NeopainError(f"actor_threads={self.actor_threads!r} is not valid; valid: a "
                               "whole number >= 1")

    @property
    def is_ray(self) -> bool:
        """Whether items and folds run on Ray."""
        return self.kind == "ray"


def _whole_at_least_one(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


LOCAL = Backend()
"""The default backend: this machine's processes; needs no Ray."""

_WORKER_STATE: Any = None


def keep_worker_state(open_state: Callable[..., object], *args: Any) -> None:
    """An initializer for ``ordered_map`` (``initializer=keep_worker_state,
    initargs=(open_state, *args)``): ``open_state(*args)`` — a detector, a model — is built
    once in each worker process or Ray actor and kept for its items (``worker_state``)."""
    global _WORKER_STATE
    _WORKER_STATE = open_state(*args)


def worker_state() -> Any:
    """What ``keep_worker_state`` built in this worker.

    Raises:
        RuntimeError: the worker started without ``keep_worker_state`` (a bug, not bad input).
    """
    if _WORKER_STATE is None:
        raise RuntimeError("a worker started without its initializer (keep_worker_state)")
    return _WORKER_STATE


class WorkerDiedError(NeopainError):
    """A worker process ended without an answer (killed, out of memory, a crash in native
    code)."""


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore Ctrl-C while worker processes start, so that they are born ignoring it (a worker
    interrupted while importing prints a traceback); the parent stops the pool instead."""
    main = threading.current_thread() is threading.main_thread()  # signals: main thread only
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


def _submit(pool: ProcessPoolExecutor, *, fn: Callable[[Any], Any], items: Iterator[Any],
            pending: deque[Future], limit: int) -> None:
    """Submit items until ``limit`` are pending or none is left."""
    while len(pending) < limit:
        try:
            item = next(items)
        except StopIteration:
            return
        pending.append(pool.submit(fn, item))


def ordered_map(
    fn: Callable[[Item], Result],
    items: Iterable[Item],
    *,
    workers: int,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[Any, ...] = (),
    start_method: str | None = None,
    backend: Backend = LOCAL,
) -> Generator[Result, None, None]:
    """``fn(item)`` for each item, handed back in the order of ``items``.

    With ``workers <= 1`` everything runs here, one item at a time (``initializer`` is not
    called). Otherwise ``workers`` processes run ``fn``, with at most
    ``IN_FLIGHT_PER_WORKER * workers`` items submitted and not yet handed back, so a long list
    is never queued whole. An exception ``fn`` raises is raised here at that item's place, after
    the results before it. When the iteration ends, fails, is interrupted (Ctrl-C) or is closed
    early, the pool shuts down: items not started are dropped, running ones are waited for.
    Worker processes ignore Ctrl-C; the parent stops them (a Ctrl-C pressed in the moment
    the processes start is ignored too). Close the generator when you stop before its end
    (``contextlib.closing``): that is when the pool shuts down.

    Example:
        >>> with closing(ordered_map(render, jobs, workers=4)) as results:  # doctest: +SKIP
        ...     for row in results:
        ...         rows.append(row)

    Args:
        fn: called on each item; with workers, picklable (a module-level function, or a
            ``functools.partial`` of one).
        items: the inputs, read as they are submitted.
        workers: worker processes; 1 or less runs inline.
        initializer, initargs: called once in each worker process as it starts (e.g. to build
            one face detector per process).
        start_method: ``fork``, ``spawn`` or ``forkserver``; None: the platform's default.
        backend: ``ray``: ``backend.actors`` Ray actors (``workers`` is not used) each call
            ``initializer`` once and then ``fn`` on their items, with the same order, bound on
            items in flight and errors (``data.ray_backend.ray_ordered_map``).

    Raises:
        WorkerDiedError: a worker process died.
        NeopainError: ``start_method`` is not one of ``START_METHODS``.
    """
    if start_method is not None and start_method not in START_METHODS:
        raise NeopainError(f"start_method={start_method!r} is not valid; valid: "
                           f"{', '.join(START_METHODS)} or None")
    if backend.is_ray:
        from neopain.data.ray_backend import ray_ordered_map  # loads Ray

        return ray_ordered_map(fn, iter(items), backend=backend, initializer=initializer,
                               initargs=initargs)
    if workers <= 1:
        return _inline(fn, items)
    context = None if start_method is None else multiprocessing.get_context(start_method)
    return _pooled(fn, iter(items), workers=workers, initializer=initializer,
                   initargs=initargs, context=context)


def _inline(fn: Callable[[Item], Result], items: Iterable[Item]) -> Generator[Result, None, None]:
    """``ordered_map`` in this process (a generator, so that it can be closed like the pool's)."""
    yield from map(fn, items)


def _pooled(fn: Callable[[Item], Result], items: Iterator[Item], *, workers: int,
            initializer: Callable[..., object] | None, initargs: tuple[Any, ...],
            context: multiprocessing.context.BaseContext | None) -> Generator[Result, None, None]:
    """``ordered_map`` over a process pool that is shut down however the iteration ends."""
    limit = IN_FLIGHT_PER_WORKER * workers
    pending: deque[Future] = deque()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=initializer, initargs=initargs)
    try:
        with _sigint_ignored():  # the processes start with the first submissions
            _submit(pool, fn=fn, items=items, pending=pending, limit=limit)
        while pending:
            result = pending.popleft().result()
            _submit(pool, fn=fn, items=items, pending=pending, limit=limit)
            yield result
    except BrokenProcessPool:
        raise WorkerDiedError(f"a worker process died (out of memory?); run again with fewer "
                              f"workers than {workers}") from None
    finally:  # done, an error, Ctrl-C or closed early: items not yet started are dropped
        pool.shutdown(wait=True, cancel_futures=True)
