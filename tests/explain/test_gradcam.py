"""Grad-CAM: the gate removes credit from positions that cannot change the output, the layer
comes from the model cfg (or a clear error), and explainers release what they hold: no hooks
left behind, the model's mode restored, 500 explanations without growing memory."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest
import torch
from torch import nn

from neopain.errors import NeopainError
from neopain.explain import GradCam, IntegratedGradients, Occlusion

MB = 1 << 20


class CroppedPool(nn.Module):
    """conv 1×1 on 5×5 → max-pool 2 (drops the last row and column) → flatten → linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            self.conv.weight.abs_()
            self.conv.bias.fill_(1.0)  # every position active in every channel
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(4 * 2 * 2, 2)
        with torch.no_grad():  # every channel is evidence for class 1
            self.head.weight[1].abs_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.conv(x)).flatten(1))


def test_the_gate_zeroes_positions_that_never_reach_the_output():
    """Plain Grad-CAM credits the row and column a pooling remainder drops (on N-CNN's
    merge.conv they lit up as hot borders); the gated map must be 0 there."""
    model = CroppedPool()
    images = torch.rand(6, 3, 5, 5) + 0.5
    with GradCam(model, layer="conv", interpolation="nearest", gate=False) as plain:
        ungated = plain.explain(images, target=1)
    with GradCam(model, layer="conv", interpolation="nearest") as gated:
        heat = gated.explain(images, target=1)
    dropped = np.zeros((5, 5), bool)
    dropped[4, :] = dropped[:, 4] = True
    assert (ungated[:, dropped] > 0).any(), "the fixture must show the plain failure"
    assert (heat[:, dropped] == 0).all()
    kept = ungated[:, ~dropped] * (heat[:, ~dropped] > 0)
    assert np.allclose(heat[:, ~dropped], kept)  # elsewhere the gate changes nothing


def test_the_layer_comes_from_the_cfg_and_a_bad_one_lists_the_convolutions(random_ncnn):
    with GradCam(random_ncnn) as explainer:
        assert explainer.layer_ is random_ncnn.centre.conv2
    with pytest.raises(NeopainError, match=r"layer='merge.cnv' is not a module.*"
                                           r"centre\.conv1, centre\.conv2"):
        GradCam(random_ncnn, layer="merge.cnv")
    with pytest.raises(NeopainError, match="interpolation='cubic' is not valid"):
        GradCam(random_ncnn, interpolation="cubic")
    with pytest.raises(NeopainError, match="needs a torch model"):
        GradCam(lambda images: images[:, 0, 0, 0])


def hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


@pytest.mark.parametrize("make", [
    lambda m: GradCam(m), lambda m: IntegratedGradients(m, steps=4, tolerance=None),
    lambda m: Occlusion(m, window=60, stride=60)], ids=["gradcam", "ig", "occlusion"])
def test_explainers_leave_no_hooks_restore_the_mode_and_refuse_after_close(make, random_ncnn,
                                                                          face_batch):
    random_ncnn.train()
    for _ in range(3):
        with make(random_ncnn) as explainer:
            assert not random_ncnn.training  # explained in eval mode (no dropout)
            explainer.explain(face_batch[:1], target="pain")
        assert hooks(random_ncnn) == 0
        assert random_ncnn.training
    with pytest.raises(NeopainError, match="closed; create a new one"):
        explainer.explain(face_batch[:1], target="pain")
    random_ncnn.eval()


def resident_bytes() -> int:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_500_explanations_grow_resident_memory_by_less_than_100_mb(random_ncnn, face_batch):
    """The bedside explains for hours: an explainer opened, used and closed per frame must not
    leak (captum objects, hooks, autograd graphs)."""

    def explain(i: int) -> None:
        with GradCam(random_ncnn, layer="centre.conv2") as explainer:
            explainer.explain(face_batch[i % len(face_batch)], target=i % 2)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core, as the promise is stated
    try:
        for i in range(30):
            explain(i)
        gc.collect()
        before = resident_bytes()
        for i in range(500):
            explain(i)
        gc.collect()
        grown = (resident_bytes() - before) / MB
    finally:
        torch.set_num_threads(threads)
    assert grown < 100
    assert hooks(random_ncnn) == 0
