"""The Ray backend of the batch commands (``--backend ray``): a Ray session, ``ordered_map``'s
items on a pool of Ray actors, and the errors a user can act on.

Ray is imported here only, and only when the Ray backend is chosen: the local backend needs no
Ray. Every path an item or fold names must be the same file on every node of the cluster
(shared storage), since actors and tasks open them where they run.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar

from neopain.data.parallel import IN_FLIGHT_PER_WORKER, Backend, WorkerDiedError
from neopain.errors import NeopainError

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

_NO_ITEM = object()
RAY_MISSING = ('--backend ray needs Ray, which is not installed here: pip install '
               '"neopain[ray]" (or choose --backend local)')


def import_ray() -> ModuleType:
    """The ``ray`` module.

    Raises:
        NeopainError: Ray is not installed (the message names ``pip install "neopain[ray]"``).
    """
    try:
        import ray
    except ImportError:
        raise NeopainError(RAY_MISSING) from None
    return ray


@contextmanager
def ray_session(backend: Backend) -> Iterator[ModuleType]:
    """Ray, connected as ``backend.address`` says, for the length of the block.

    A Ray this process started already (a test, a notebook) is used as it is and left running;
    otherwise the one this block starts or joins is shut down (disconnected) when it ends.

    Raises:
        NeopainError: Ray is not installed; no cluster answers at ``backend.address``.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=backend.address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as error:
        where = "a new local Ray" if backend.address is None else f"address={backend.address!r}"
        raise NeopainError(f"Ray could not start or connect ({where}): {error}; valid addresses: "
                           "unset (a Ray on this machine), auto (the cluster this machine "
                           "belongs to) or ray://HOST:PORT") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def node_cpus(ray: ModuleType) -> list[int]:
    """The CPUs of each live node of the connected cluster."""
    return [int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")]


def largest_node_cpus(ray: ModuleType) -> int:
    """The CPUs of the cluster's largest live node (at least 1): a task or actor asking for
    more would wait for ever."""
    return max([1, *node_cpus(ray)])


def ray_result(ray: ModuleType, ref: Any) -> Any:
    """``ray.get(ref)``, with the exception a task raised raised here as itself, and a dead
    actor or node as ``WorkerDiedError``."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise NeopainError(f"a Ray task failed: {type(error).__name__}") from None
    except ray.exceptions.RayActorError:
        raise WorkerDiedError("a Ray actor died (its node lost, or out of memory); run again "
                              "to resume") from None
    except ray.exceptions.RayError as error:  # out of memory, a worker or node lost, ...
        raise WorkerDiedError(f"a Ray task did not finish ({type(error).__name__}); run again "
                              "to resume") from None


class _Worker:
    """One Ray actor of ``ray_ordered_map``: ``initializer(*initargs)`` once, then ``fn``."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def start(self, initializer: Callable[..., object] | None, initargs: tuple[Any, ...]) -> None:
        if initializer is not None:
            initializer(*initargs)

    def run(self, item: Any) -> Any:
        return self.fn(item)


def ray_ordered_map(fn: Callable[[Item], Result], items: Iterator[Item], *, backend: Backend,
                    initializer: Callable[..., object] | None = None,
                    initargs: tuple[Any, ...] = ()) -> Generator[Result, None, None]:
    """``parallel.ordered_map`` on Ray: ``backend.actors`` actors (None: as many as the
    cluster's nodes have room for), each reserving ``backend.actor_threads`` CPUs, each call
    ``initializer(*initargs)`` once, then ``fn`` on the items given to them in turn. Results
    come back in the order of ``items``, with at most ``IN_FLIGHT_PER_WORKER`` items per actor
    submitted and not yet handed back; an exception ``fn`` or ``initializer`` raises is raised
    here as itself. However the iteration ends, the actors are killed. No items: no Ray is
    started or joined.

    Raises:
        NeopainError: Ray is not installed (at once, not at the first item); at the first
            item: actors that no node of the cluster can hold (more threads than its largest
            node has CPUs, or more actors than there is room for), which would wait for ever.
    """
    import_ray()
    return _actor_map(fn, items, backend=backend, initializer=initializer, initargs=initargs)


def _actor_map(fn: Callable[[Item], Result], items: Iterator[Item], *, backend: Backend,
               initializer: Callable[..., object] | None,
               initargs: tuple[Any, ...]) -> Generator[Result, None, None]:
    first = next(items, _NO_ITEM)
    if first is _NO_ITEM:  # nothing to do (all done by an earlier run): no cluster to start
        return
    items = itertools.chain([first], items)
    with ray_session(backend) as ray:
        count = _actor_count(ray, backend)
        remote = ray.remote(num_cpus=backend.actor_threads)(_Worker)
        actors = [remote.remote(fn) for _ in range(count)]
        pending: deque[Any] = deque()
        submitted = 0

        def submit() -> None:
            nonlocal submitted
            for item in items:
                pending.append(actors[submitted % count].run.remote(item))
                submitted += 1
                if len(pending) >= IN_FLIGHT_PER_WORKER * count:
                    return

        try:
            for started in [actor.start.remote(initializer, initargs) for actor in actors]:
                ray_result(ray, started)
            submit()
            while pending:
                result = ray_result(ray, pending.popleft())
                submit()
                yield result
        finally:  # done, an error, Ctrl-C or closed early: items not yet run are dropped
            for actor in actors:
                try:
                    ray.kill(actor)
                except Exception:  # noqa: BLE001 - a lost connection: kill the others still
                    log.debug("a Ray actor could not be killed")


def _actor_count(ray: ModuleType, backend: Backend) -> int:
    """``backend.actors``, or as many as the cluster has room for; refused where an actor
    could never be placed (it and the items given to it would wait for ever)."""
    threads, cpus = backend.actor_threads, node_cpus(ray)  # one answer: nodes come and go
    largest = max(cpus, default=0)
    if largest == 0:
        raise NeopainError("the Ray cluster has no live node with CPUs (a head started with "
                           "--num-cpus=0 and no workers yet?); start or add a node with CPUs")
    if threads > largest:
        raise NeopainError(f"each Ray actor runs on {threads} threads and so takes {threads} "
                           f"CPUs, but the cluster's largest node has {largest}; valid: 1 to "
                           f"{largest} threads per actor (assess: --threads; explain: "
                           "OMP_NUM_THREADS, torch's threads)")
    room = sum(node // threads for node in cpus)  # an actor takes its CPUs on one node
    if backend.actors is not None and backend.actors > room:
        each = "one CPU" if threads == 1 else f"{threads} CPUs on one node"
        raise NeopainError(f"--workers {backend.actors}: the Ray cluster has room for {room} "
                           f"actor{'' if room == 1 else 's'} of {each}; valid: 1 to {room}")
    return backend.actors or room
