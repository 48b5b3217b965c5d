"""Hostile image bytes through the one image reader (files and live frames) and ``neopain
assess``: an image within the caps or a clear ``ImageReadError``, within 1 s and 200 MB, never
a traceback or a hang (issue 16: a 30000² PNG took 11.8 s; a FIFO named x.jpg hung assess)."""

from __future__ import annotations

import pytest
from hypothesis import given

from fuzz.inputs import examples
from fuzz.media import image_cases, image_corpus

CORPUS = image_corpus()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_audits_images_are_refused_fast_and_small(sandbox, name):
    outcome = sandbox.run(CORPUS[name])
    outcome.check()


@pytest.mark.slow
@examples(200)
@given(case=image_cases())
def test_hostile_images_are_read_within_the_caps_or_refused(sandbox, case):
    outcome = sandbox.run(case)
    outcome.check()
