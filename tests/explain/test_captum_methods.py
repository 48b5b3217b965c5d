"""The captum methods behind the Explainer interface (saliency, input × gradient, DeepLift,
GradientSHAP, SmoothGrad, guided Grad-CAM, LIME on superpixels): heatmaps of the input's shape
that find the evidence of the class asked for on the toy model whose evidence is known, for
either output layout, and the same heatmaps on a second call (the bug guarded: an unseeded
method, whose heatmaps cannot be reproduced or compared)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neopain.errors import NeopainError
from neopain.explain import CaptumGradients, GuidedGradCam, Lime
from neopain.explain.lime import superpixels
from neopain.explain.localization import localization

MAKERS = {
    **{name: (lambda model, name=name: CaptumGradients(model, method=name, samples=8))
       for name in CaptumGradients.METHODS},
    "guidedgradcam": lambda model: GuidedGradCam(model),
    "lime": lambda model: Lime(model, samples=80, segments=30),
}


@pytest.mark.parametrize("single_output", [False, True])
@pytest.mark.parametrize("name", list(MAKERS))
def test_each_method_finds_the_evidence_of_the_class_and_repeats(colour_model, blobs, name,
                                                                 single_output):
    image, red, blue = blobs
    with MAKERS[name](colour_model(single_output=single_output)) as explainer:
        heat = explainer.explain(np.stack([image, image]), target=["pain", "nopain"])
        again = explainer.explain(np.stack([image, image]), target=["pain", "nopain"])
    assert heat.shape == (2, 32, 32) and heat.dtype == np.float32 and heat.min() >= 0
    assert np.array_equal(heat, again)
    assert localization(heat[:1], red[None]).mass_ratio > 3.0  # red is the pain evidence
    assert localization(heat[1:], blue[None]).mass_ratio > 3.0


def test_lime_explains_a_function(colour_model, blobs):
    image, red, _ = blobs
    model = colour_model()

    def prob_pain(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(images)), dim=1)[:, 1].numpy()

    with Lime(prob_pain, samples=80, segments=30) as lime:
        heat = lime.explain(image, target="pain")
    assert localization(heat, red[None]).pointing == 1.0


def test_superpixels_follow_the_blobs(blobs):
    image, red, _ = blobs
    labels = superpixels(torch.from_numpy(image), segments=30).numpy()
    inside = np.bincount(labels[red]).argmax()  # the superpixel holding most of the red blob
    assert (labels[red] == inside).mean() > 0.8
    assert red[labels == inside].mean() > 0.8  # and little else


def test_gradient_methods_refuse_a_function_and_bad_options(colour_model):
    with pytest.raises(NeopainError, match="saliency needs a torch model"):
        CaptumGradients(lambda x: np.zeros(len(x)), method="saliency")
    with pytest.raises(NeopainError, match="method='shap' is not valid; valid: saliency, "):
        CaptumGradients(colour_model(), method="shap")
    with pytest.raises(NeopainError, match="samples=1 is not valid"):
        Lime(colour_model(), samples=1)


@pytest.mark.parametrize("name", ["gradientshap", "smoothgrad"])
def test_a_sampled_heatmap_does_not_depend_on_the_other_images_of_its_batch(colour_model,
                                                                           blobs, name):
    """Bug guarded: the noise was seeded once per batch and GradientSHAP drew its baselines
    from the whole batch, so an image's heatmap changed with the images explained beside it."""
    image, _, _ = blobs
    other = np.ascontiguousarray(image[:, ::-1, ::-1])
    with CaptumGradients(colour_model(), method=name, samples=8, batch_size=2) as explainer:
        alone = explainer.explain(image[None], target="pain")
        second = explainer.explain(np.stack([other, image]), target="pain")
    np.testing.assert_allclose(second[1], alone[0], rtol=1e-5, atol=1e-6)


def test_guided_gradcam_refuses_a_layer_without_a_spatial_map_by_name(blobs):
    """Bug guarded: a layer after global pooling made captum return an empty tensor, and
    summing its channels raised an IndexError."""
    image, _, _ = blobs
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 2))
    with GuidedGradCam(model, layer="3") as explainer, \
            pytest.raises(NeopainError, match="layer '3' has no spatial map .* valid: a "
                                              "convolution layer"):
        explainer.explain(image, target=1)


def test_options_valid_in_captum_are_not_refused(blobs):
    """Bug guarded: LIME refused perturbations_per_eval=1 ("valid: >= 2"), and saliency,
    input × gradient and SmoothGrad refused baseline='black' without a cfg though they use no
    baseline."""
    image, _, _ = blobs
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten())  # no cfg
    with Lime(model, samples=10, segments=10, perturbations_per_eval=1) as lime:
        assert lime.explain(image, target=1).shape == (1, 32, 32)
    for method in ("saliency", "inputxgradient", "smoothgrad"):
        with CaptumGradients(model, method=method, baseline="black", samples=2) as explainer:
            assert explainer.explain(image, target=1).shape == (1, 32, 32)
    for method in ("deeplift", "gradientshap"):
        with pytest.raises(NeopainError, match="baseline='black' needs the model's "
                                               "normalization"):
            CaptumGradients(model, method=method, baseline="black")
