"""The client turns each answer of the protocol into what the agent does next, the clock
offset comes from the fastest reading, and the token file is refused unless private."""

from __future__ import annotations

import time

import pytest

from ports import free_port
from neopain.agent.client import (
    DeviceClient, InvalidRequest, Revoked, Unreachable, UnknownToken, read_token,
)
from neopain.agent.clock import best_offset, measure_offset
from neopain.errors import NeopainError


def test_revoked_and_unknown_tokens_stop_with_the_servers_words(ward):
    ward.revoked = True
    with DeviceClient(ward.url, token=ward.token) as client, pytest.raises(Revoked) as raised:
        client.heartbeat({"status": None})
    assert "bed 3" in str(raised.value) and "new token" in str(raised.value)
    with DeviceClient(ward.url, token="npd_wrong") as client, \
            pytest.raises(UnknownToken, match="no device has this token"):
        client.heartbeat({"status": None})


def test_busy_down_and_absent_servers_are_unreachable_not_fatal(ward):
    ward.busy = True
    with DeviceClient(ward.url, token=ward.token) as client:
        with pytest.raises(Unreachable, match="HTTP 503") as raised:
            client.send_records([{"id": "a"}])
        assert raised.value.status == 503
        ward.busy, ward.down = False, True
        with pytest.raises(Unreachable) as raised:
            client.heartbeat({})
        assert raised.value.status is None
        ward.down = False  # the same client reconnects after a dropped connection
        assert client.heartbeat({})["session_id"] == 7
    with DeviceClient(f"http://127.0.0.1:{free_port()}", token=ward.token) as client, \
            pytest.raises(Unreachable, match="no answer"):
        client.clock()
    assert not issubclass(Unreachable, (Revoked, UnknownToken, InvalidRequest))


def test_records_are_acknowledged_once_stored_and_again_when_sent_twice(ward):
    record = {"id": "abc", "session_id": 7}
    with DeviceClient(ward.url, token=ward.token) as client:
        assert client.send_records([record])["acked"] == ["abc"]
        assert client.send_records([record])["acked"] == ["abc"]
        refused = client.send_records([{"id": "old", "session_id": 3}])["refused"]
    assert [r["reason"] for r in refused] == ["not_bound"]
    assert ward.arrivals == ["abc"]


def test_the_offset_is_that_of_the_shortest_round_trip():
    readings = [(0.0, 110.0, 4.0), (10.0, 110.6, 10.2), (20.0, 121.0, 21.0)]
    reading = best_offset(readings)
    assert reading.offset_s == pytest.approx(110.6 - 10.1)
    assert reading.round_trip_s == pytest.approx(0.2)


def test_the_offset_to_a_server_clock_ahead_is_measured(ward):
    """The offset is against the monotonic clock (which never steps); the wall clock's is kept
    beside it."""
    ward.clock_offset_s = 3600.0
    with DeviceClient(ward.url, token=ward.token) as client:
        reading = measure_offset(client.clock)
    tolerance = reading.round_trip_s / 2 + 0.01
    assert reading.wall_offset_s == pytest.approx(3600.0, abs=tolerance)
    assert reading.offset_s == pytest.approx(3600.0 + time.time() - time.monotonic(),
                                             abs=tolerance)


def test_a_token_file_others_can_read_is_refused_like_an_ssh_key(token_file):
    assert read_token(token_file).startswith("npd_")
    token_file.chmod(0o644)
    with pytest.raises(NeopainError, match=f"mode 0644 .* chmod 600 {token_file}"):
        read_token(token_file)
    token_file.chmod(0o600)
    token_file.write_text("password123\n")
    with pytest.raises(NeopainError, match="holds no device token"):
        read_token(token_file)
    with pytest.raises(NeopainError, match="--token-file .*missing"):
        read_token(token_file.with_name("missing"))


@pytest.mark.parametrize("url", ["ward:8000", "ftp://ward", "http://", ""])
def test_a_server_that_is_no_http_address_is_named(url):
    with pytest.raises(NeopainError, match="is not a server address"):
        DeviceClient(url, token="npd_x")


@pytest.mark.parametrize("url, warned", [
    ("http://ward.example:8000", True), ("http://10.0.0.5", True),
    ("http://127.0.0.1:8000", False), ("http://localhost:8000", False),
    ("http://[::1]:8000", False), ("https://ward.example", False),
])
def test_a_token_sent_over_plain_http_to_another_machine_is_warned_of(url, warned):
    from neopain.agent.client import plain_http_warning
    warning = plain_http_warning(url)
    assert (warning is not None) == warned
    if warned:
        assert "the token travels unencrypted" in warning and "use https://" in warning
