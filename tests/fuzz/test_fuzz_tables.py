"""Hostile manifests, videos tables and importer sources: ``dataset validate``, ``frames`` and
``import`` end in a result or a clear error (exit 1), never a traceback, a hang or a bomb
(issue 16: long names, deep nesting, FIFOs, /dev/zero stopped the CLI with tracebacks)."""

from __future__ import annotations

import pytest
from hypothesis import given

from fuzz.inputs import examples, table_cases, table_corpus

CORPUS = table_corpus()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_audits_tables_end_in_a_clear_error(sandbox, name):
    case = CORPUS[name]
    outcome = sandbox.run(case)
    outcome.check()
    assert outcome.exit_code == case.exit_code, outcome.output
    for text in case.says:
        assert text in outcome.output, f"{text!r} not in: {outcome.output}"


@pytest.mark.slow
@examples(150)
@given(case=table_cases())
def test_hostile_tables_never_give_a_traceback_or_hang(sandbox, case):
    outcome = sandbox.run(case)
    outcome.check()
