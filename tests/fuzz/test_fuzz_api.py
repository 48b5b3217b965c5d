"""The JSON API and the pages under hostile requests: schemathesis over ``/api/openapi.json``
with a logged-in client, ids and query values beyond 64 bits, hostile uploads. Every answer
is below 500, carries the security headers and ``Cache-Control: no-store``, and no exception
reaches the server log (issue 16: ids beyond 64 bits and a 1×5000 PNG upload answered 500)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from fuzz.conftest import ServerLog
from fuzz.inputs import examples
from fuzz.sandbox import bounded, memory_mb, reset_peak
from fuzz.web import Call, id_calls, plain_calls, schema_calls, send, upload_calls, upload_corpus


@pytest.fixture(scope="module")
def api_calls(fuzz_server):
    """schemathesis' valid and invalid calls of every operation in the app's schema.

    Drawn inside hypothesis tests rather than through ``schemathesis.pytest.from_fixture``:
    schemathesis 4.32's lazy schema reads ``request.node._nodeid``, which pytest 9.2 removed.
    """
    return schema_calls(schemathesis.openapi.from_asgi("/api/openapi.json",
                                                       fuzz_server.server.app))


UNSENT_SHARE = 0.05
"""At most this share of drawn calls may be ones the client refuses to send (an invalid URL,
a header h11 will not write): more, and the fuzzing tests less than it says."""


def sent(fuzz_server, draw_call, n: int) -> None:
    """Send ``n`` drawn calls (``draw_call(data)``), each judged; then check that few went
    unsent."""
    unsent = []

    @examples(n)
    @given(data=st.data())
    def each(data):
        outcome = send(fuzz_server.client, draw_call(data), server_log=fuzz_server.log.read)
        unsent.append(outcome.signature == "unsent")
        outcome.check()

    each()
    assert sum(unsent) <= UNSENT_SHARE * len(unsent), f"{sum(unsent)} of {len(unsent)} unsent"


def test_every_api_operation_answers_hostile_input_without_a_5xx(fuzz_server, api_calls):
    sent(fuzz_server, lambda data: data.draw(api_calls), 300)


def test_ids_beyond_64_bits_and_hostile_queries_are_answered_below_500(fuzz_server):
    calls = id_calls(fuzz_server.routes(), fuzz_server.ids) | plain_calls()
    sent(fuzz_server, lambda data: data.draw(calls), 200)


@pytest.mark.slow
def test_hostile_uploads_are_assessed_or_refused_below_500(fuzz_server):
    uploads = upload_calls(fuzz_server.known["patients"])
    sent(fuzz_server, lambda data: data.draw(uploads), 40)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["upload png-30000x30000", "upload png-rgba-10000x10000",
                                  "upload png-1x5000", "upload png-5000x1"])
def test_the_audits_uploads_are_refused_within_1_s_and_200_mb(fuzz_server, name):
    call = upload_corpus(fuzz_server.known["patients"][0])[name]
    rss = memory_mb("VmRSS")
    reset_peak()
    outcome = send(fuzz_server.client, call, server_log=fuzz_server.log.read)
    grown = replace(outcome, peak_mb=memory_mb("VmHWM") - rss)
    bounded(grown, slow_s=1.0, heavy_mb=200.0, what=name).check()
    assert outcome.reply == str(call.status) and call.says in outcome.output, outcome.output


def test_the_fuzzer_sees_a_crashing_route():
    """Guards the guard: a route that raises is a 5xx with the exception from the log."""
    app = FastAPI()

    @app.get("/api/crash")
    def crash() -> None:
        raise ZeroDivisionError("the route failed")

    log = ServerLog(app)
    client = TestClient(log, raise_server_exceptions=False)
    outcome = send(client, Call("GET", "/api/crash", "/api/crash"), server_log=log.read)
    assert outcome.problem == "5xx" and "ZeroDivisionError" in outcome.logged
