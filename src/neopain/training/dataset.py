"""A torch Dataset over manifest rows: read, crop, augment, resize, normalize.

Preprocessing is given field by field (size, mean, std, channel order) so that a model's cfg
can be passed in as it is; the defaults are ImageNet's at 224×224, RGB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from numbers import Integral
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from neopain.models.preprocess import network_input, resize_sample
from neopain.training.augment import AugmentedSample
from neopain.data.images import ImageReadError, read_image
from neopain.data.manifest import LABELS, N_KEYPOINTS, Manifest
from neopain.errors import NeopainError
from neopain.faces.crop import pixel_box

LABEL_INDEX = {"nopain": 0, "pain": 1}
"""The class index of each label: what a model's output ``1`` means is ``pain``."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHANNEL_ORDERS = ("RGB", "BGR")

Transform = Callable[..., AugmentedSample]
"""``transform(image, keypoints, box, *, rng) -> AugmentedSample``, e.g. an ``Augmenter``."""


class FaceDataset(Dataset):
    """Manifest rows as ``{"image", "label", "index"}`` (+ ``"keypoints"``) tensors.

    Each item: the image read from disk, put in ``channel_order``, cropped to its face box when
    ``crop_to_face``, passed through ``transform`` when given, resized to ``size`` and normalized
    as ``(pixel / 255 - mean) / std`` into a float32 C×H×W tensor; ``label`` is an int64 class
    index (``LABEL_INDEX``: pain=1, nopain=0) and ``index`` the manifest row. With
    ``keypoints=True``, ``"keypoints"`` is a float32 (5, 2) tensor in output pixels (NaN when
    the row has none).

    Randomness: with ``seed``, manifest row r in epoch e is augmented with
    ``np.random.default_rng([seed, e, r])``, the same for any DataLoader worker count. Call
    ``set_epoch(e)`` before each epoch (as with ``DistributedSampler``; it does not reach
    ``persistent_workers``, which keep their copy) or every epoch repeats epoch 0. Without
    ``seed``, each item draws its seed from torch's generator, which DataLoader seeds per worker.

    Args:
        manifest: the manifest.
        rows: manifest row indices to use; or
        subjects: subject ids whose rows to use (e.g. a fold's ``train``); neither: all rows.
        transform: the online augmentation, e.g. ``Augmenter(AugmentSpec())``.
        size: (height, width) of the output.
        mean, std: per channel, in ``channel_order``, on the 0–1 scale: a mean ``m`` given in
            0–255 units is ``m / 255``; a model fed raw 0–255 values minus a mean has std
            ``1 / 255``.
        channel_order: ``RGB`` or ``BGR``.
        crop_to_face: crop each image to its ``face_box`` first (every row needs one).
        keypoints: also return the keypoints.
        seed: see Randomness.

    Raises:
        NeopainError: bad arguments, unknown subjects or labels, or rows without a face box when
            ``crop_to_face``; unreadable images when an item is read (naming the manifest line).

    Example:
        >>> data = FaceDataset(manifest, subjects=plan.folds[0].train,
        ...                    transform=Augmenter(AugmentSpec()), seed=0)
        >>> loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True)
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        rows: Sequence[int] | None = None,
        subjects: Iterable[str] | None = None,
        transform: Transform | None = None,
        size: tuple[int, int] = (224, 224),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        channel_order: Literal["RGB", "BGR"] = "RGB",
        crop_to_face: bool = False,
        keypoints: bool = False,
        seed: int | None = None,
    ) -> None:
        self.manifest = manifest
        self.rows = rows
        self.subjects = subjects
        self.transform = transform
        self.size = size
        self.mean = mean
        self.std = std
        self.channel_order = channel_order
        self.crop_to_face = crop_to_face
        self.keypoints = keypoints
        self.seed = seed
        self.epoch = 0
        self.indices_ = self._select()
        table = manifest.table
        bad = [i for i in self.indices_ if table["label"].iat[i] not in LABEL_INDEX]
        if bad:
            raise NeopainError(f"manifest line {bad[0] + 2}, column 'label': "
                               f"{table['label'].iat[bad[0]]!r} is not a valid label; valid: "
                               f"{', '.join(LABELS)}")
        self.labels_ = np.array([LABEL_INDEX[table["label"].iat[i]] for i in self.indices_],
                                dtype=np.int64)
        self.boxes_ = manifest.boxes()[self.indices_]
        self.points_ = manifest.keypoints()[self.indices_]
        if crop_to_face and np.isnan(self.boxes_).any():
            line = self.indices_[int(np.isnan(self.boxes_).any(axis=1).argmax())] + 2
            raise NeopainError(f"manifest line {line}, column 'face_box': is empty, but "
                               "crop_to_face=True needs a face box in every row; detect faces "
                               "first or use crop_to_face=False")
        self.mean_ = self._per_channel("mean", mean, positive=False)
        self.std_ = self._per_channel("std", std, positive=True)
        if len(size) != 2 or not all(isinstance(v, Integral) and v >= 1 for v in size):
            raise NeopainError(f"size={size!r} must be (height, width) in whole pixels >= 1")
        if channel_order not in CHANNEL_ORDERS:
            raise NeopainError(f"channel_order={channel_order!r} is not valid; valid: "
                               f"{', '.join(CHANNEL_ORDERS)}")

    def _select(self) -> np.ndarray:
        n = len(self.manifest)
        if self.rows is not None and self.subjects is not None:
            raise NeopainError("give rows or subjects, not both")
        if self.rows is not None:
            rows = np.asarray(self.rows, dtype=np.int64).reshape(-1)
            outside = rows[(rows < 0) | (rows >= n)]
            if outside.size:
                raise NeopainError(f"rows has {int(outside[0])}; valid: 0 to {n - 1} "
                                   f"(the manifest has {n} rows)")
            return rows
        table = self.manifest.table
        if self.subjects is None:
            return np.arange(n)
        wanted = {str(s) for s in self.subjects}
        unknown = sorted(wanted - set(table["subject"]))
        if unknown:
            raise NeopainError(f"subjects {', '.join(unknown[:5])} are not in the manifest; "
                               "valid: its subject ids")
        return np.flatnonzero(table["subject"].isin(wanted).to_numpy())

    @staticmethod
    def _per_channel(name: str, values: Sequence[float], *, positive: bool) -> np.ndarray:
        array = np.asarray(values, dtype=np.float32).reshape(-1)
        if array.shape != (3,) or not np.isfinite(array).all() or (positive and (array <= 0).any()):
            what = "positive numbers" if positive else "numbers"
            raise NeopainError(f"{name}={tuple(values)!r} must be 3 finite {what}, one per "
                               "channel in channel_order")
        return array

    def scores(self) -> np.ndarray:
        """The manifest ``score`` of each item, in dataset order (NaN where empty): what soft
        labels are made from.

        Raises:
            NeopainError: a score that is not a number (naming its manifest line).
        """
        column = self.manifest.table["score"]
        scores = np.full(len(self.indices_), np.nan)
        for item, row in enumerate(self.indices_):
            text = str(column.iat[row]).strip()
            if text:
                try:
                    scores[item] = float(text)
                except ValueError:
                    raise NeopainError(f"manifest line {row + 2}, column 'score': {text!r} is "
                                       "not a number; valid: a number or empty") from None
        return scores

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass draw epoch ``epoch``'s augmentations (only matters with a seed)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices_)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        row = int(self.indices_[item])
        path = self.manifest.image_path(row)
        try:
            image = read_image(path)
        except ImageReadError as error:
            raise ImageReadError(f"manifest line {row + 2}, image {path}", error.reason) from None
        if self.channel_order == "RGB":
            image = np.ascontiguousarray(image[:, :, ::-1])
        points = None if np.isnan(self.points_[item]).any() else self.points_[item].copy()
        box = None if np.isnan(self.boxes_[item]).any() else self.boxes_[item].copy()
        if self.crop_to_face:
            try:
                image, points, box = _crop(image, points, box)
            except NeopainError as error:
                raise NeopainError(f"manifest line {row + 2}, column 'face_box': {error}") from None
        if self.transform is not None:
            if self.seed is None:
                rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            else:
                rng = np.random.default_rng([self.seed, self.epoch, row])
            try:
                sample = self.transform(image, points, box, rng=rng)
            except NeopainError as error:
                raise NeopainError(f"manifest line {row + 2}, image {path}: {error}") from None
            image, points = sample.image, sample.keypoints
        size = (int(self.size[0]), int(self.size[1]))
        image, points = resize_sample(image, points, size=size)
        pixels = network_input(image, size=size, mean=self.mean_, std=self.std_)
        out = {"image": torch.from_numpy(pixels),
               "label": torch.tensor(self.labels_[item]), "index": torch.tensor(row)}
        if self.keypoints:
            points = np.full((N_KEYPOINTS, 2), np.nan) if points is None else points
            out["keypoints"] = torch.tensor(points, dtype=torch.float32)
        return out


def _crop(image: np.ndarray, points: np.ndarray | None, box: np.ndarray):
    """Crop to the face box (whole pixels, clipped to the image); points and box move along."""
    x1, y1, x2, y2 = pixel_box(box, image_shape=image.shape)
    offset = np.array([x1, y1, x1, y1], dtype=float)
    points = None if points is None else points - offset[:2]
    return np.ascontiguousarray(image[y1:y2, x1:x2]), points, box - offset
