"""Live replies carry what the page shows (``shown``), and a heatmap only for a face the model
can assess.

Guards issue 19: one frame whose face could not be assessed made the page say "This model
gives no heatmap." for good, and its missing evidence was kept for the model's whole evidence
interval, so the next assessable faces got no heatmap either.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from neopain.faces.crop import CropRule
from neopain.prediction import Prediction, Predictor

MARK = 16  # inside the white top-left square of ``frames.face(pain=True)`` (conftest.MARK)


class MarkedOnly(Predictor):
    """Assesses only frames whose top-left corner is white (no pain, 0.2); a face without the
    mark cannot be assessed. Its evidence lights the whole crop of an assessable face and is
    recomputed at most once a minute, as a costly model's would be."""

    name = "marked-only"
    crop = CropRule.whole_image()
    evidence_interval_s = 60.0

    def __init__(self) -> None:
        self.evidence_calls = 0

    @staticmethod
    def _marked(crop: np.ndarray) -> bool:
        return bool(crop[:MARK, :MARK].mean() > 200)

    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[Prediction]:
        return [Prediction(0.2 if self._marked(c) else 0.5, "nopain", 0.5, self.name,
                           assessable=self._marked(c)) for c in crops]

    def evidence(self, crops: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        self.evidence_calls += len(crops)
        return [np.ones(c.shape[:2], np.float32) if self._marked(c) else None for c in crops]


@pytest.fixture()
def socket_of(tmp_path, make):
    server = make(tmp_path, predictor=MarkedOnly(), timeline_interval_s=0.0)
    client = server.client("clinician")
    patient = client.post("/api/patients", json={"record_number": "HD-1"}).json()
    session_id = client.post(f"/api/patients/{patient['id']}/sessions").json()["id"]
    return server, client, session_id


def test_a_face_that_cannot_be_assessed_gets_no_heatmap_and_does_not_block_the_next(
        socket_of, frames):
    server, client, session_id = socket_of
    with client.websocket_connect(f"/ws/sessions/{session_id}") as socket:
        assert socket.receive_json() == {"type": "ready"}
        socket.send_text('{"type": "options", "heatmap": true}')
        replies = []
        for marked in (False, True, True):  # the mark makes the face assessable
            socket.send_bytes(frames.jpeg(frames.face(pain=marked)))
            replies.append(socket.receive_json())
    unassessable, *assessable = replies
    assert unassessable["found"] and not unassessable["assessable"]
    assert "heatmap" not in unassessable  # not "null": the model does give heatmaps
    assert unassessable["shown"] == {"kind": "unassessable", "text": "cannot assess",
                                     "confidence": None, "number": "–"}
    for reply in assessable:
        assert reply["heatmap"], reply.get("heatmap")
        assert reply["shown"] == {"kind": "nopain", "text": "no pain", "confidence": 0.8,
                                  "number": "80%"}
    assert server.predictor.evidence_calls == 1  # the interval still holds for real evidence
