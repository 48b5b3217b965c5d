"""The profile's charts drawn in a separate process, awaited by the routes.

matplotlib is pure Python for most of a drawing and holds the GIL while it runs: drawn inside a
request, a chart stalled the event loop and the live streams' inference threads (the live round
trip p95 went from under 100 ms to 240 ms while two readers browsed). One spawned worker process
draws them instead; the routes read the rows, hand plain values over and await the SVG.

``chart_worker(app)`` is the app's ``ChartWorker``, made on first use; ``close_chart_worker(app)``
stops it when the app stops.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import TracebackType

from starlette.applications import Starlette

log = logging.getLogger(__name__)

UNAVAILABLE = "The chart could not be drawn just now; reload the page to try again."


class ChartUnavailable(Exception):
    """The worker crashed or a chart took too long; the message is for users."""


@dataclass(frozen=True)
class ChartJob:
    """One chart: ``draw(*args, **kwargs)`` returns the SVG; ``key`` names its inputs
    (``chart_job`` makes it)."""

    draw: Callable[..., bytes]
    args: tuple[object, ...]
    kwargs: dict[str, object]
    key: bytes


def chart_job(draw: Callable[..., bytes], *args: object, **kwargs: object) -> ChartJob:
    """A ``ChartJob`` keyed by a digest of ``draw`` and its arguments.

    ``draw`` must be a module-level function (it reaches the worker by name) and the arguments
    plain values (numbers, strings, datetimes, zones). Call it where the rows were read, off
    the event loop: the digest reads every value.
    """
    # the inputs themselves, not a row count and newest id: SQLite reuses the ids of a
    # discarded session, so those could match while the rows differ
    data = pickle.dumps((draw, args, sorted(kwargs.items())), protocol=pickle.HIGHEST_PROTOCOL)
    return ChartJob(draw, args, kwargs, hashlib.sha256(data).digest())


class ChartWorker:
    """Draws ``ChartJob``s in one spawned worker process, started with the first chart that is
    not cached; ``close`` (or leaving a ``with`` block) stops it.

    Charts are drawn one at a time, in the order asked. A chart that is stopped takes the
    charts queued behind it with it: those answer ``ChartUnavailable`` too.

    Args:
        timeout_s: how long a chart may take from when its drawing starts (the charts asked
            before it are done), so that charts queued behind a slow one each get the whole
            time; past it the worker is stopped (a new one starts with the next chart).
        cache_bytes: how many bytes of SVG to keep, least recently used out. A profile page
            asks for the same charts each time it is opened and most rows do not change
            between views, so a reader coming back costs no drawing; the key is a digest of
            the chart's inputs, so a new or changed row draws anew.
    """

    def __init__(self, *, timeout_s: float = 30.0, cache_bytes: int = 16_000_000) -> None:
        self.timeout_s = timeout_s
        self.cache_bytes = cache_bytes
        self._pool: ProcessPoolExecutor | None = None
        self._svgs: OrderedDict[bytes, bytes] = OrderedDict()
        self._cached_bytes = 0
        self._last_turn: Future[None] | None = None
        self._stops = 0  # times the worker failed or was closed: the charts queued then fail

    async def render(self, job: ChartJob) -> bytes:
        """The chart's SVG, from the cache or drawn by the worker once the charts asked before
        it are done.

        Raises:
            ChartUnavailable: the worker process ended, the chart took over ``timeout_s``, or
                it was queued behind one of those or behind ``close``.
            asyncio.CancelledError: the awaiting task was cancelled (a chart still queued
                for it is not drawn).
        """
        cached = self._cached(job)
        if cached is not None:
            return cached
        # one chart in the worker at a time: its time counts from when it was handed over,
        # and a chart whose reader left while it waited is never drawn
        ahead, turn, stops = self._last_turn, Future[None](), self._stops
        self._last_turn = turn
        try:
            if ahead is not None and not ahead.done():
                await asyncio.wait([asyncio.wrap_future(ahead)])
            if self._stops != stops:  # the worker failed, or was closed, meanwhile
                log.warning("a chart queued behind a stopped worker was not drawn")
                raise ChartUnavailable(UNAVAILABLE)
            svg = self._cached(job)  # a reader before it asked for the same chart
            if svg is None:
                svg = await self._draw(job)
        finally:
            # the next chart's turn, however this one ended (a chart whose reader left may
            # still be drawing: what is left of it then counts against the next one's time)
            turn.set_result(None)
        self._remember(job.key, svg)
        return svg

    def close(self) -> None:
        """Stop the worker process (after the chart it is drawing), drop the cached SVGs, and
        answer the charts still queued with ``ChartUnavailable``."""
        pool, self._pool = self._pool, None
        self._stops += 1
        self._svgs.clear()
        self._cached_bytes = 0
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ChartWorker:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    async def _draw(self, job: ChartJob) -> bytes:
        pool = self._running_pool()
        try:
            future = pool.submit(job.draw, *job.args, **job.kwargs)
        except BrokenProcessPool:  # the idle worker ended (killed, out of memory): anew
            self._stop(pool)
            pool = self._running_pool()
            future = pool.submit(job.draw, *job.args, **job.kwargs)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except TimeoutError:
            log.error("a chart took over %g s; its worker process is stopped", self.timeout_s)
            self._stops += 1
            self._stop(pool)
        except BrokenProcessPool:
            log.error("the chart worker process ended; a new one starts with the next chart")
            self._stops += 1
            self._stop(pool)
        except asyncio.CancelledError:
            if _cancelled_from_outside() or not future.cancelled():
                raise  # the reader left
            # ``close`` came before the worker took the chart: cancelled, but not this task
            log.warning("the chart worker was closed before it drew a chart")
        raise ChartUnavailable(UNAVAILABLE)

    def _cached(self, job: ChartJob) -> bytes | None:
        svg = self._svgs.get(job.key)
        if svg is not None:
            self._svgs.move_to_end(job.key)
        return svg

    def _remember(self, key: bytes, svg: bytes) -> None:
        if key in self._svgs or len(svg) > self.cache_bytes:
            return
        self._svgs[key] = svg
        self._cached_bytes += len(svg)
        while self._cached_bytes > self.cache_bytes:
            self._cached_bytes -= len(self._svgs.popitem(last=False)[1])

    def _running_pool(self) -> ProcessPoolExecutor:
        if self._pool is not None and not all(
                process.is_alive() for process in (self._pool._processes or {}).values()):
            # the idle worker ended (killed, out of memory) and the pool may not know yet: a
            # chart sent to it would fail although nothing was wrong with the chart
            self._stop(self._pool)
        if self._pool is None:
            # spawn, not fork: a forked child would copy the locks of the server's threads
            # (live streams, database, logging) in whatever state they were in
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_yield_to_the_monitor)
        return self._pool

    def _stop(self, pool: ProcessPoolExecutor) -> None:
        """End ``pool``'s process now, busy or not, and start afresh with the next chart."""
        if self._pool is pool:
            self._pool = None
        # Python before 3.14 has no public call that ends a busy worker: its processes by pid
        for process in list((pool._processes or {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)


def _cancelled_from_outside() -> bool:
    """Whether the running task was asked to stop (``Task.cancel``), rather than an awaited
    future ending cancelled."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


CHART_NICENESS = 10
"""How much lower the worker's CPU priority is than the server's: a chart waits, a bed does not."""


ORPHAN_CHECK_S = 1.0
"""How often the worker looks whether the server that started it is still there."""


def _yield_to_the_monitor() -> None:
    """Lower this worker's CPU priority (``os.nice``), so that on a busy server the live
    streams' threads run first and charts take the CPU time left over (on two cores, charts
    drawn at the same priority pushed the live round trip p95 from 74 ms to 388 ms); and end
    this worker when the server is gone."""
    os.nice(CHART_NICENESS)
    threading.Thread(target=_end_when_orphaned, args=(os.getppid(),), daemon=True,
                     name="chart-worker-orphan-check").start()


def _end_when_orphaned(server_pid: int) -> None:
    """Exit once the server that started this worker has died. A server killed outright
    (SIGKILL, the out-of-memory killer) cannot stop its pool, and the worker holds both ends of
    its own pipes, so it never reads an end of file: it idled forever with 110 MB. Polled by
    hand: Linux's PR_SET_PDEATHSIG fires when the *thread* that started the process ends, which
    in a pool is any thread that happened to submit the first chart."""
    while os.getppid() == server_pid:
        time.sleep(ORPHAN_CHECK_S)
    os._exit(0)


def chart_worker(app: Starlette) -> ChartWorker:
    """The app's ``ChartWorker`` (``app.state.chart_worker``), made on first use."""
    worker = getattr(app.state, "chart_worker", None)
    if worker is None:
        worker = app.state.chart_worker = ChartWorker()
    return worker


async def warm_chart_worker(app: Starlette, job: ChartJob) -> None:
    """Start the app's worker and draw ``job`` with it (loading the drawing library), so that
    starting a process, at full priority until it lowers its own, happens while the server
    starts rather than while beds stream (bench_ward: frames of every bed took 0.3-0.4 s as
    the first reader's chart started the worker). A failure is logged; charts start it later."""
    try:
        await chart_worker(app).render(job)
    except ChartUnavailable:
        log.warning("the chart worker could not start; the first chart starts it")


def close_chart_worker(app: Starlette) -> None:
    """Stop the app's chart worker if it was made; call it when the app stops."""
    worker = getattr(app.state, "chart_worker", None)
    if worker is not None:
        worker.close()
