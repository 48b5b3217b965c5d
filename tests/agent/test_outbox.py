"""The outbox keeps records in the order they were made, once per id, within its bounds, and
loses none that ``add`` returned for when the process is killed."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from neopain.agent.outbox import Outbox, OutboxError


def record(i: int, *, pad: int = 0) -> dict:
    return {"id": f"r{i:05d}", "time": float(i), "snapshot": "x" * pad}


def test_records_come_back_oldest_first_after_removals_and_a_reopen(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as outbox:
        for i in (5, 3, 9, 1, 7):  # ids not in sorted order: the order made is what counts
            assert outbox.add(record(i))
        outbox.remove(["r00003", "unknown"])
        assert [r["id"] for r in outbox.peek(limit=10)] == ["r00005", "r00009", "r00001",
                                                            "r00007"]
    with Outbox(path) as outbox:
        assert outbox.count_ == 4
        assert [r["id"] for r in outbox.peek(limit=2)] == ["r00005", "r00009"]
        assert outbox.peek(limit=10)[0] == record(5)


def test_an_id_is_kept_once_however_often_it_is_added(tmp_path):
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        assert outbox.add(record(1))
        assert outbox.add(record(2))
        assert outbox.add(record(1))  # a retry after a crash between insert and return
        assert [r["id"] for r in outbox.peek(limit=10)] == ["r00001", "r00002"]
        assert outbox.count_ == 2


@pytest.mark.parametrize("bound", ["records", "bytes"])
def test_a_full_outbox_refuses_new_records_and_keeps_the_older_in_order(tmp_path, bound):
    size = len('{"id":"r00000","time":0.0,"snapshot":""}') + 100
    limits = {"max_records": 3} if bound == "records" else {"max_bytes": 3 * size + 10}
    with Outbox(tmp_path / "o.sqlite3", **limits) as outbox:
        assert [outbox.add(record(i, pad=100)) for i in range(5)] == [True] * 3 + [False] * 2
        assert outbox.full
        assert [r["id"] for r in outbox.peek(limit=10)] == ["r00000", "r00001", "r00002"]
        outbox.remove(["r00000"])
        assert not outbox.full
        assert outbox.add(record(5, pad=100))
        assert [r["id"] for r in outbox.peek(limit=10)] == ["r00001", "r00002", "r00005"]


def test_a_batch_is_bounded_in_bytes_but_never_empty(tmp_path):
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        for i in range(4):
            outbox.add(record(i, pad=1000))
        assert len(outbox.peek(limit=10, max_bytes=2500)) == 2
        assert len(outbox.peek(limit=10, max_bytes=10)) == 1


def test_the_file_is_readable_by_its_owner_only_and_bad_bounds_are_named(tmp_path):
    path = tmp_path / "new" / "deeper" / "o.sqlite3"
    Outbox(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) & 0o077 == 0
    assert stat.S_IMODE(os.stat(path.parent.parent).st_mode) & 0o077 == 0  # each folder made
    with pytest.raises(OutboxError, match="max_records=0 must be a whole number >= 1"):
        Outbox(path, max_records=0)
    (tmp_path / "junk").write_bytes(b"not a database" * 100)
    with pytest.raises(OutboxError, match="not an outbox"):
        Outbox(tmp_path / "junk")


WRITER = textwrap.dedent("""
    import sys
    from neopain.agent.outbox import Outbox
    outbox = Outbox(sys.argv[1])
    i = 0
    while True:
        outbox.add({"id": f"k{i:06d}", "snapshot": "y" * 2000})
        print(f"k{i:06d}", flush=True)  # made: add returned
        i += 1
""")


def test_every_record_made_survives_a_sigkill_in_order(tmp_path):
    """The guarded bug: records acknowledged to the caller but still in a buffer, lost when
    the process dies."""
    path = tmp_path / "o.sqlite3"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                              text=True)
    made = []
    while len(made) < 200:
        made.append(writer.stdout.readline().strip())
    writer.send_signal(signal.SIGKILL)
    made += [line.strip() for line in writer.stdout.read().splitlines()]
    writer.wait()
    with Outbox(path) as outbox:
        kept = [r["id"] for r in outbox.peek(limit=100_000, max_bytes=10**9)]
    assert kept[:len(made)] == made  # all made, in order; at most one more (killed mid-print)
    assert len(kept) - len(made) <= 1


def test_the_running_count_and_bytes_stay_those_of_the_file(tmp_path):
    """Guards: removal subtracting what it did not delete (an unknown id, an id named twice)."""
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as outbox:
        for i in range(6):
            outbox.add(record(i))
        outbox.remove(["r00001", "r00001", "unknown", "r00004"])
        kept = (outbox.count_, outbox.bytes_)
    with Outbox(path) as reopened:  # counted from the file itself
        assert kept == (reopened.count_, reopened.bytes_) and kept[0] == 4
