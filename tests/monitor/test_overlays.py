"""Explanation overlays: the occlusion heatmap of an exported model lights where the model's
evidence is, a crop's heatmap lands on the crop's place in the image, and overlays are written
for assessed images only."""

from __future__ import annotations

import cv2
import numpy as np
from exported_models import top_left_model

from neopain.export.runtime import OnnxPredictor
from neopain.faces.base import Face
from neopain.monitor.images import ImageAssessment
from neopain.faces.crop import CropRule
from neopain.monitor.overlays import draw_overlay, heat_on_image, write_overlays
from neopain.prediction import Prediction


def test_the_heatmap_lights_where_the_evidence_is(tmp_path):
    # guards: a heatmap flipped, transposed or taken from the wrong class would light the rest
    crop = np.full((60, 80, 3), 200, np.uint8)  # bright everywhere: occluding lowers P(pain)
    with OnnxPredictor(top_left_model(tmp_path), occlusion_squares=4) as predictor:
        (heat,) = predictor.evidence([crop])
    assert heat.shape == (60, 80) and heat.min() >= 0 and heat.max() == 1.0
    assert heat[:25, :35].mean() > 0.8
    assert heat[35:, :].max() < 0.05 and heat[:, 45:].max() < 0.05


def test_overlays_are_written_for_assessed_images_only(tmp_path):
    image = np.full((100, 120, 3), 200, np.uint8)
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), image)
    face = Face((20.0, 10.0, 80.0, 70.0), 0.9)
    results = [ImageAssessment("a.png", None, face, Prediction(0.8, "pain", 0.5, "m")),
               ImageAssessment("a.png", None, None, None, "no face found")]
    progress = []
    with OnnxPredictor(top_left_model(tmp_path)) as predictor:
        written = write_overlays(results, [path, path], predictor, tmp_path / "out",
                                 on_progress=lambda d, t: progress.append((d, t)))
    assert [p.name for p in written] == ["0000_a.png"]
    assert progress[-1] == (2, 2)
    drawn = cv2.imread(str(written[0]))
    assert drawn.shape == image.shape
    assert not np.array_equal(drawn[15:40, 25:50], image[15:40, 25:50])  # heat, top-left
    assert np.array_equal(drawn[50:65, 55:75], image[50:65, 55:75])  # no evidence, untouched
    assert np.array_equal(drawn[85:, :], image[85:, :])  # outside the face


def test_draw_overlay_without_heat_draws_the_box_in_the_label_colour():
    image = np.zeros((50, 50, 3), np.uint8)
    out = draw_overlay(image, Face((10.0, 10.0, 40.0, 40.0), 1.0),
                       Prediction(0.9, "pain", 0.5, "m"))
    assert tuple(out[25, 10]) == (40, 40, 220) and not image.any()


def test_a_padded_square_heatmap_is_clipped_to_the_image_where_the_square_leaves_it():
    # guards: a square crop that reaches past the image edge shifting its heat inwards
    rule = CropRule.padded_square(0.5)
    box = (0.0, 10.0, 20.0, 30.0)  # the square spans x -10..30, y 0..40
    heat = np.zeros((40, 40), np.float32)
    heat[:, 10] = 1.0  # column 10 of the crop is x = 0 of the image
    part, region = heat_on_image(heat, placement=rule.placement(box, image_shape=(50, 50, 3)),
                                 image_shape=(50, 50, 3))
    assert region == (0, 0, 30, 40)
    assert part.shape == (40, 30) and part[:, 0].min() == 1.0 and part[:, 2:].max() == 0.0
    assert heat_on_image(heat, placement=(-50.0, -50.0, -10.0, -10.0),
                         image_shape=(50, 50, 3)) is None
