"""One photo, one score: a photo scored through ``neopain assess`` (monitor.images) and through a
web upload gives the same P(pain).

Issue 16 found two image readers: uploads read with Pillow (EXIF orientation applied,
transparency on white), ``neopain assess``, training and overlays with ``cv2.imdecode`` (no EXIF
for PNG, transparency dropped to its stored colour). The same photo could be scored differently
in the CLI and in the browser."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from neopain.data.images import read_image
from neopain.monitor.images import assess_images
from neopain.prediction import Prediction, Predictor
from neopain.faces.crop import CropRule

ORIENTATION_TAG = 0x0112


class PixelPredictor(Predictor):
    """P(pain) from the face crop's pixels, weighted per channel: any change of crop, colour,
    turn or channel order changes it."""

    name = "fake-pixels"
    crop = CropRule.padded_square(0.2)

    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[Prediction]:
        out = []
        for crop in crops:
            weighted = crop.astype(np.float64) @ np.array([0.5, 0.3, 0.2])
            prob = float(weighted.mean() / 255.0)
            out.append(Prediction(prob, "pain" if prob >= 0.5 else "nopain", 0.5, self.name))
        return out

    def close(self) -> None:
        pass


def upright_on_white() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut (not square, so a missed turn shows) as RGBA with a transparent left band
    and a half-transparent chin band, and the BGR picture a viewer shows (alpha over white)."""
    rgb = skdata.astronaut()[:, 40:440]
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :60] = 0  # stored black behind full transparency: white when shown
    alpha[230:260] = 128
    rgba = np.dstack([rgb, alpha])
    rgba[:, :60, :3] = 0
    shown = Image.new("RGB", (rgb.shape[1], rgb.shape[0]), (255, 255, 255))
    shown.paste(Image.fromarray(rgba, "RGBA"), mask=Image.fromarray(alpha))
    return rgba, np.asarray(shown)[:, :, ::-1]


def sideways_png(path: Path) -> np.ndarray:
    """Write the photo as a camera held sideways stores it (EXIF orientation 6: turn it a
    quarter clockwise to see it upright), with transparency; returns the upright BGR view."""
    rgba, shown = upright_on_white()
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(rgba, 1)), "RGBA").save(path,
                                                                         exif=exif.tobytes())
    return shown


def test_a_sideways_transparent_photo_scores_the_same_in_assess_and_in_an_upload(tmp_path, make):
    path = tmp_path / "sideways.png"
    shown = sideways_png(path)
    assert np.abs(read_image(path).astype(int) - shown).max() <= 1  # what a viewer shows

    [assessed] = assess_images([path], PixelPredictor(), detector="mediapipe-short")
    assert assessed.prediction is not None, assessed.problem

    server = make(tmp_path / "server", predictor=PixelPredictor())
    client = server.client("clinician")
    patient = client.post("/api/patients", json={"name": "Baby Parity"})
    assert patient.status_code == 201, patient.text
    response = client.post(f"/api/patients/{patient.json()['id']}/uploads",
                           files={"file": ("sideways.png", path.read_bytes(), "image/png")})
    assert response.status_code == 201, response.text
    [saved] = response.json()["saved"]
    assert saved["face_found"]
    assert abs(saved["prob_pain"] - assessed.prediction.prob_pain) < 1e-6
