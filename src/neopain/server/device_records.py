"""Device records written by one thread, many requests to a commit (group commit).

Each records request of a bed device waits until its records are on disk (the device drops
them from its outbox on the answer). With one transaction per request, 64 devices sending a
record a second make 64 commits a second, each taking the database's one write lock: under
load the requests queue behind the lock. ``RecordWriter`` instead takes every request waiting
at that moment and stores them in one transaction (``crud.add_device_records``), then answers
each: as many commits as rounds, the same guarantee for each request.

Written by hand: the pattern is a dozen lines around a queue, and neither SQLAlchemy nor the
standard library offers group commit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

from sqlalchemy.orm import Session, sessionmaker

from neopain.store import crud
from neopain.store.crud import DeviceRecord, Refused
from neopain.store.session import StoreError

log = logging.getLogger("neopain.server")

WAIT_S = 10.0
"""How long a request waits for its round before it answers busy (the agent waits longer
for an answer, so it hears the 503 and backs off)."""
ROUND_REQUESTS = 256
"""Requests in one transaction at most."""
QUEUED_REQUESTS = 1024
"""Requests waiting at most; past it a request is answered busy at once."""

Result = tuple[list[str], list[Refused]]


class RecordWriter:
    """The writer thread of one server process (module docstring); ``close`` stops it."""

    def __init__(self, store: sessionmaker[Session]) -> None:
        self.store = store
        self._queue: queue.Queue[tuple[int, Sequence[DeviceRecord], Future] | None] = \
            queue.Queue(maxsize=QUEUED_REQUESTS)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def write(self, device_id: int, records: Sequence[DeviceRecord]) -> Result:
        """Store a request's records; its acknowledged ids and refusals once they are on disk.

        Raises:
            StoreError: not stored (the database refused it, the server is stopping, too many
                requests wait, or none of it was written within ``WAIT_S``): the device sends
                them again (a round already under way may still store them: it is stored once).
        """
        done: Future[Result] = Future()
        with self._lock:
            if self._closed:
                raise StoreError("the server is stopping; send the records again")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="device-records",
                                                daemon=True)
                self._thread.start()
            try:
                self._queue.put_nowait((device_id, records, done))
            except queue.Full:
                raise StoreError(f"{QUEUED_REQUESTS} requests wait to be stored; send the "
                                 "records again in a moment") from None
        try:
            return done.result(timeout=WAIT_S)
        except TimeoutError:
            done.cancel()  # not yet in a round: it never will be
            raise StoreError(f"records not stored within {WAIT_S:.0f} s; send them "
                             "again") from None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < ROUND_REQUESTS:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:  # closing (the last item: close refuses new writes first)
                    stopping = True
                    break
                jobs.append(job)
            # a request that gave up waiting is left out (a Future cancelled before it runs)
            self._round([job for job in jobs if job[2].set_running_or_notify_cancel()])

    def _round(self, jobs: list[tuple[int, Sequence[DeviceRecord], Future]], *,
               alone: bool = False) -> None:
        if not jobs:
            return
        try:
            with self.store() as db:
                results = crud.add_device_records(
                    db, batches=[(device_id, records) for device_id, records, _ in jobs])
        except StoreError as error:  # a constraint: one request's must not fail the others
            if len(jobs) > 1 and not alone:
                for job in jobs:
                    self._round([job], alone=True)
                return
            self._fail(jobs, error)
            return
        except Exception as error:  # noqa: BLE001 - the writer outlives any one round
            log.warning("storing devices' records failed: %s", type(error).__name__)
            self._fail(jobs, StoreError("the records could not be stored now; send them "
                                        "again"))
            return
        for (_, _, done), result in zip(jobs, results):
            done.set_result(result)

    @staticmethod
    def _fail(jobs: list[tuple[int, Sequence[DeviceRecord], Future]],
              error: StoreError) -> None:
        for _, _, done in jobs:
            done.set_exception(error)

    def close(self) -> None:
        """Finish the queued rounds and stop the thread (waits up to ``WAIT_S``)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)  # waits for room: the queued rounds go first
            thread.join(WAIT_S)
