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

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from neopain.store import crud
from neopain.store.crud import DeviceRecord, Refused
from neopain.store.session import StoreError

log = logging.getLogger("neopain.server")

WAIT_S = 30.0
"""How long a request waits for its round before it answers busy."""
ROUND_REQUESTS = 256
"""Requests in one transaction at most."""

Result = tuple[list[str], list[Refused]]


class RecordWriter:
    """The writer thread of one server process (module docstring); ``close`` stops it."""

    def __init__(self, store: sessionmaker[Session]) -> None:
        self.store = store
        self._queue: queue.SimpleQueue[tuple[int, Sequence[DeviceRecord], Future] | None] = \
            queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def write(self, device_id: int, records: Sequence[DeviceRecord]) -> Result:
        """Store a request's records; its acknowledged ids and refusals once they are on disk.

        Raises:
            StoreError: not stored (the database refused it, the server is stopping, or the
                round took longer than ``WAIT_S``): the device sends them again.
        """
        done: Future[Result] = Future()
        with self._lock:
            if self._closed:
                raise StoreError("the server is stopping; send the records again")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="device-records",
                                                daemon=True)
                self._thread.start()
            self._queue.put((device_id, records, done))
        try:
            return done.result(timeout=WAIT_S)
        except TimeoutError:
            raise StoreError(f"records not stored within {WAIT_S:.0f} s; send them "
                             "again") from None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < ROUND_REQUESTS:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:  # closing: finish this round first
                    self._queue.put(None)
                    break
                jobs.append(job)
            self._round(jobs)

    def _round(self, jobs: list[tuple[int, Sequence[DeviceRecord], Future]]) -> None:
        try:
            with self.store() as db:
                results = crud.add_device_records(
                    db, batches=[(device_id, records) for device_id, records, _ in jobs])
        except (StoreError, SQLAlchemyError) as error:
            if len(jobs) > 1:  # one request's conflict must not fail the others
                for job in jobs:
                    self._round([job])
                return
            log.warning("storing a device's records failed: %s", type(error).__name__)
            jobs[0][2].set_exception(error if isinstance(error, StoreError) else StoreError(
                "the records could not be stored now; send them again"))
            return
        for (_, _, done), result in zip(jobs, results):
            done.set_result(result)

    def close(self) -> None:
        """Finish the queued rounds and stop the thread (waits up to ``WAIT_S``)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(WAIT_S)
