"""The loss one fit trains with: the training set's labels, soft targets and class weights,
label smoothing and the L1 penalty on the head, applied batch by batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neopain.models.base import PainModel
from neopain.training.dataset import FaceDataset
from neopain.training.losses import balanced_class_weights, l1_penalty, pain_loss, soft_targets


@dataclass(frozen=True)
class FitLoss:
    """``loss(model, logits, positions)``: the loss of the batch at those dataset positions."""

    labels: torch.Tensor
    targets: torch.Tensor | None
    class_weights: torch.Tensor | None
    label_smoothing: float
    l1_head: float

    @classmethod
    def of(cls, data: FaceDataset, *, class_weights: str | None, soft_labels: str | None,
           label_smoothing: float, l1_head: float, device: torch.device) -> FitLoss:
        """The loss of training on ``data`` (see ``Trainer`` for the options).

        Raises:
            NeopainError: ``class_weights="balanced"`` and a class without an image.
        """
        weights = targets = None
        if class_weights == "balanced":
            weights = torch.tensor(balanced_class_weights(data.labels_), dtype=torch.float32,
                                   device=device)
        if soft_labels is not None:
            targets = torch.tensor(soft_targets(data.scores(), data.labels_, kind=soft_labels),
                                   dtype=torch.float32)
        return cls(torch.from_numpy(data.labels_), targets, weights,
                   label_smoothing=label_smoothing, l1_head=l1_head)

    def __call__(self, model: PainModel, logits: torch.Tensor,
                 positions: torch.Tensor) -> torch.Tensor:
        device = logits.device
        targets = None if self.targets is None else self.targets[positions].to(device)
        loss = pain_loss(logits, self.labels[positions].to(device), targets=targets,
                         class_weights=self.class_weights, label_smoothing=self.label_smoothing)
        if self.l1_head:
            loss = loss + self.l1_head * l1_penalty(model.head_parameters())
        return loss
