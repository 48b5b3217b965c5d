"""Group commit of device records (``server.device_records.RecordWriter``): requests that
arrive together are stored in one transaction and each is answered only once its records are on
disk; a request the database refuses fails alone, the others of its round are stored."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from neopain.server.device_records import RecordWriter
from neopain.store import crud
from neopain.store.crud import DeviceRecord
from neopain.store.session import StoreError
from neopain.store.tables import Assessment, utc_now


def record(session_id: int) -> DeviceRecord:
    return DeviceRecord(record_id=uuid.uuid4().hex, session_id=session_id,
                        time=utc_now() - timedelta(seconds=0.5), label="nopain", prob_pain=0.1,
                        smoothed=0.1, state="nopain", uncertain=False, changed=False,
                        face_box=(1, 2, 3, 4), latency_ms=3.0, model="m")


@pytest.fixture()
def beds(server):
    """Eight devices, each bound to its own patient's session: (device id, session id)."""
    out = []
    with server.db() as db:
        for number in range(8):
            patient = crud.create_patient(db, actor=None, name=f"Baby {number}")
            device, _ = crud.create_device(db, actor=None, name=f"bed {number}")
            out.append((device.id, crud.bind_device(db, device, patient=patient,
                                                    actor=None).id))
    return out


def commits(server) -> list[int]:
    """A list that grows by one at each commit of the server's database."""
    seen: list[int] = []
    engine = server.app.state.neopain.store.kw["bind"]
    event.listen(engine, "commit", lambda _connection: seen.append(1))
    return seen


def test_requests_arriving_together_share_commits_and_each_is_stored(server, beds):
    writer = RecordWriter(server.app.state.neopain.store)
    counted = commits(server)
    sent = {device_id: [record(session_id) for _ in range(3)] for device_id, session_id in beds}
    answers: dict[int, tuple] = {}
    start = threading.Barrier(len(beds))

    def send(device_id: int) -> None:
        start.wait()
        answers[device_id] = writer.write(device_id, sent[device_id])

    threads = [threading.Thread(target=send, args=(device_id,)) for device_id, _ in beds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    writer.close()
    for device_id, records in sent.items():  # each answered with its own ids, all stored
        assert answers[device_id] == ([r.record_id for r in records], [])
    with server.db() as db:
        assert db.scalar(select(func.count()).select_from(Assessment)) == 3 * len(beds)
    assert len(counted) < len(beds)  # fewer commits than requests


def test_a_request_the_database_refuses_fails_alone(server, beds):
    writer = RecordWriter(server.app.state.neopain.store)
    (device_id, session_id), (other_id, other_session) = beds[:2]
    good = [record(session_id)]
    answers: dict[str, object] = {}
    gate = threading.Event()
    real = crud.add_device_records

    def slow_first(db, *, batches):  # hold the first round so the next two share one
        if not gate.is_set():
            gate.set()
            time.sleep(0.3)
        return real(db, batches=batches)

    def send(name: str, device: int, records: list) -> None:
        try:
            answers[name] = writer.write(device, records)
        except StoreError as error:
            answers[name] = error

    import neopain.server.device_records as module
    module.crud.add_device_records = slow_first
    try:
        first = threading.Thread(target=send, args=("first", other_id, [record(other_session)]))
        first.start()
        gate.wait(5)
        # a P(pain) of 7: the table's check constraint refuses the whole transaction
        broken = [dataclasses.replace(record(other_session), prob_pain=7.0)]
        bad = threading.Thread(target=send, args=("bad", other_id, broken))
        ok = threading.Thread(target=send, args=("good", device_id, good))
        bad.start()
        ok.start()
        for thread in (first, bad, ok):
            thread.join(30)
    finally:
        module.crud.add_device_records = real
        writer.close()
    assert answers["good"] == ([good[0].record_id], [])
    assert isinstance(answers["bad"], StoreError)
    with server.db() as db:
        ids = set(db.scalars(select(Assessment.record_id)))
    assert good[0].record_id in ids


def test_after_close_a_write_is_refused_not_lost(server, beds):
    writer = RecordWriter(server.app.state.neopain.store)
    writer.close()
    with pytest.raises(StoreError, match="stopping"):
        writer.write(beds[0][0], [record(beds[0][1])])


def test_the_writer_outlives_an_unexpected_error(server, beds, monkeypatch):
    import neopain.server.device_records as module

    writer = RecordWriter(server.app.state.neopain.store)
    real = crud.add_device_records
    calls = []

    def once_broken(db, *, batches):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in one round")
        return real(db, batches=batches)

    monkeypatch.setattr(module.crud, "add_device_records", once_broken)
    device_id, session_id = beds[0]
    with pytest.raises(StoreError, match="send them again"):
        writer.write(device_id, [record(session_id)])
    again = [record(session_id)]
    assert writer.write(device_id, again) == ([again[0].record_id], [])
    writer.close()


def test_when_too_many_requests_wait_the_next_is_answered_busy_at_once(server, beds,
                                                                       monkeypatch):
    import neopain.server.device_records as module

    monkeypatch.setattr(module, "QUEUED_REQUESTS", 1)
    writer = RecordWriter(server.app.state.neopain.store)
    gate = threading.Event()
    real = crud.add_device_records

    def held(db, *, batches):
        gate.wait(10)
        return real(db, batches=batches)

    monkeypatch.setattr(module.crud, "add_device_records", held)
    (first_device, first_session), (second_device, second_session) = beds[:2]
    threading.Thread(target=writer.write, args=(first_device, [record(first_session)]),
                     daemon=True).start()  # taken into a round, held
    time.sleep(0.3)
    threading.Thread(target=writer.write, args=(second_device, [record(second_session)]),
                     daemon=True).start()  # waits in the queue (room for one)
    time.sleep(0.3)
    started = time.monotonic()
    with pytest.raises(StoreError, match="wait to be stored"):
        writer.write(first_device, [record(first_session)])
    assert time.monotonic() - started < 1.0
    gate.set()
    writer.close()
