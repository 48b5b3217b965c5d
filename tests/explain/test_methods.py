"""Every method name builds an explainer that finds the toy model's evidence; an unknown name,
or a gradient method for a model given as a function (an ONNX export), is refused by name, and
what was opened before the refusal is closed (the bug guarded: a half-built set leaving the
model in eval mode with hooks attached)."""

from __future__ import annotations

import numpy as np
import pytest

from neopain.errors import NeopainError
from neopain.explain import (
    METHOD_NAMES, MODEL_AGNOSTIC, CaptumGradients, GradCam, GuidedGradCam, IntegratedGradients,
    Lime, Occlusion, Rise, build_explainers,
)
from neopain.explain.localization import localization
from neopain.explain.methods import ATTENTION_METHODS


def test_the_registry_holds_the_old_and_the_new_methods():
    assert {"gradcam", "ig", "occlusion", "rise", "lime", "guidedgradcam", "saliency",
            "inputxgradient", "deeplift", "gradientshap", "smoothgrad",
            "rollout"} == set(METHOD_NAMES)
    assert len(METHOD_NAMES) == len(set(METHOD_NAMES))


def test_every_method_by_name_finds_the_pain_evidence(colour_model, blobs):
    image, red, _ = blobs
    model = colour_model()
    explainers = build_explainers([*METHOD_NAMES, "gradcam"], model, model.cfg,
                                  rise_masks=300)
    try:
        # repeats ignored, order kept; rollout left out: the toy CNN has no attention
        # (tests/explain/test_attention_rollout.py)
        assert list(explainers) == [m for m in METHOD_NAMES if m not in ATTENTION_METHODS]
        for name, explainer in explainers.items():
            heat = explainer.explain(image, target="pain")
            assert heat.shape == (1, 32, 32) and heat.min() >= 0, name
            assert localization(heat, red[None]).mass_ratio > 2.0, name
    finally:
        for explainer in explainers.values():
            explainer.close()


def test_a_model_function_gets_the_model_agnostic_methods_only(blobs):
    def prob_pain(images: np.ndarray) -> np.ndarray:
        return np.full(len(images), 0.5, np.float32)

    built = build_explainers(MODEL_AGNOSTIC, prob_pain, None)
    assert list(built) == list(MODEL_AGNOSTIC)
    for explainer in built.values():
        explainer.close()
    with pytest.raises(NeopainError, match="--method 'deeplift' needs a torch model .*; an "
                                           ".onnx model can use: occlusion, rise, lime"):
        build_explainers(["rise", "deeplift"], prob_pain, None)


def test_an_unknown_name_is_refused_with_the_valid_ones():
    with pytest.raises(NeopainError, match="--method 'shap' is not valid; valid: gradcam, ig, "
                                           "occlusion, rise, lime, guidedgradcam, saliency"):
        build_explainers(["gradcam", "shap"], object(), None)


def test_a_refused_option_closes_what_was_opened(colour_model):
    model = colour_model().train()
    with pytest.raises(NeopainError, match="baseline='grey' is not valid"):
        build_explainers(["gradcam", "ig"], model, model.cfg, baseline="grey")
    assert model.training  # gradcam was opened (eval mode) and closed again


def test_closing_what_was_built_leaves_a_training_model_training(colour_model):
    """Bug guarded: explainers restore the mode they found, so closing them in build order put
    a train-mode model in eval mode; and a refused option set eval mode before refusing."""
    model = colour_model().train()
    with pytest.raises(NeopainError, match="masks=0 is not valid"):
        build_explainers(["gradcam", "guidedgradcam", "rise"], model, model.cfg, rise_masks=0)
    assert model.training


@pytest.mark.parametrize("maker", [
    lambda model: Rise(model, masks=0), lambda model: Lime(model, segments=0),
    lambda model: CaptumGradients(model, method="smoothgrad", samples=0),
    lambda model: Occlusion(model, window=0), lambda model: IntegratedGradients(model, steps=1),
], ids=["rise", "lime", "smoothgrad", "occlusion", "ig"])
def test_a_refused_option_leaves_the_model_mode_alone(colour_model, maker):
    model = colour_model().train()
    with pytest.raises(NeopainError, match="is not valid"):
        maker(model)
    assert model.training


@pytest.mark.parametrize("maker", [GuidedGradCam, GradCam])
def test_a_refused_gradcam_layer_leaves_the_model_mode_alone(colour_model, maker):
    """Bug guarded: the base set eval mode before the layer was looked up and refused."""
    model = colour_model().train()
    with pytest.raises(NeopainError, match="layer='nope' is not a module of the model"):
        maker(model, layer="nope")
    assert model.training


def test_importing_the_explainers_leaves_scikit_image_unloaded():
    """Bug guarded: lime imported SLIC at module level, a third of a second added to every
    import of neopain.explain (explain run with any method, the ONNX runtime's occlusion)."""
    import subprocess
    import sys

    code = "import sys, neopain.explain; print('skimage' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
