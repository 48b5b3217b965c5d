"""Explain a model's decisions on a set of images and write heatmaps, overlays and region shares.

``explain_images`` takes ``ExplainItem``s (preprocessed images with what is known about them)
from a folder (``folder_items``) or a manifest's rows (``manifest_items``: a training fold's test
rows are ``runs.select_rows(manifest, subjects=runs.load_fold(path).test_subjects)``),
and one ``Explainer`` per method. For every image, method and target class it writes into
``out``:

- ``heatmaps/<name>.<method>.<class>.npy``: the heatmap, float32 on the network's input pixels;
- ``overlays/<name>.<method>.<class>.png``: the heatmap over the face (jet colour map);
- ``regions/<name>.npy``: the facial region of every input pixel (when keypoints are known);
- ``explanations.csv``: one row per heatmap (see ``EXPLANATION_COLUMNS``) with the share of
  its mass in each facial region, and where the input lies on the original image
  (``original_image`` relative to ``out``, its ``original_size`` [width, height], the input's
  ``original_box`` on it; ``placement_problem`` says why not, when it cannot be placed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from neopain.training.dataset import FaceDataset
from neopain.data.images import ImageReadError, image_size, read_image
from neopain.data.manifest import Manifest, format_box
from neopain.data.parallel import LOCAL, Backend, keep_worker_state, ordered_map, worker_state
from neopain.errors import NeopainError
from neopain.explain.alignment import Placement, PlacementError, aligned_crops, input_placement
from neopain.explain.base import CLASSES, Explainer
from neopain.faces.regions import OUTSIDE, REGIONS, region_map, region_shares
from neopain.models.preprocess import preprocess_crop
from neopain.faces.crop import pixel_box
from neopain.faces.landmarks import load_landmarks
from neopain.models.cfg import ModelCfg

TARGETS = ("predicted", "true", "both")
EXPLANATION_COLUMNS = ("image", "row", "label", "pred", "prob_pain", "method", "target",
                       "heatmap", "overlay", "regions", "crop_box", *REGIONS, OUTSIDE,
                       "original_image", "original_size", "original_box", "placement_problem")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
ProgressHook = Callable[[int, int], None]
UnreadableHook = Callable[[ImageReadError], None]


@dataclass(frozen=True)
class ExplainItem:
    """One image to explain.

    Attributes:
        image: float32 (3, H, W), preprocessed as the model was trained.
        name: what the image is called in outputs: its manifest path, or its file name.
        label: the true class (``pain``/``nopain``), None when unknown.
        row: the manifest row, None for a folder image.
        crop_box: the face box the input was cropped to, None for a whole image.
        keypoints: (5, 2) on the input's pixels, None when unknown.
        landmarks: (468, 2) on the input's pixels, None when unknown.
        placement: where the input lies on the original image; None: ``placement_problem``
            says why it cannot be placed.
    """

    image: np.ndarray
    name: str
    label: str | None = None
    row: int | None = None
    crop_box: tuple[float, float, float, float] | None = None
    keypoints: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    placement: Placement | None = None
    placement_problem: str = ""


def _landmarks_in_input(manifest: Manifest, row: int, *, input_box: tuple[int, int, int, int],
                        size: tuple[int, int]) -> np.ndarray | None:
    """The row's face mesh landmarks moved onto the network input's pixels (crop + resize)."""
    cell = str(manifest.table["landmarks"].iat[row]).strip()
    if not cell:
        return None
    points = load_landmarks(manifest.root / cell)[:, :2].astype(np.float64)
    x1, y1, x2, y2 = input_box
    scale = np.array([size[1] / (x2 - x1), size[0] / (y2 - y1)])
    return (points - [x1, y1] + 0.5) * scale - 0.5  # resize_sample's pixel-centre mapping


def _skip(error: ImageReadError, on_unreadable: UnreadableHook | None) -> None:
    if on_unreadable is None:
        raise error
    on_unreadable(error)


def manifest_items(manifest: Manifest, cfg: ModelCfg, *, rows: Sequence[int] | None = None,
                   crop_to_face: bool = True,
                   on_unreadable: UnreadableHook | None = None) -> Iterator[ExplainItem]:
    """Manifest rows as items, preprocessed by ``FaceDataset`` exactly as training did.

    Args:
        on_unreadable: called with the error of each image that cannot be read, which is then
            left out; None: the error is raised.

    Raises:
        NeopainError: rows without a face box when ``crop_to_face``; unreadable images
            (``ImageReadError``) without ``on_unreadable``.
    """
    data = FaceDataset(manifest, rows=rows, size=cfg.input_size, mean=cfg.mean, std=cfg.std,
                       channel_order=cfg.channel_order, crop_to_face=crop_to_face,
                       keypoints=True)
    aligned = aligned_crops(manifest.root)  # one read of the settings, not one per row
    for index in range(len(data)):
        try:
            item = data[index]
            row = int(item["index"])
            box = data.boxes_[index]
            width, height = image_size(manifest.image_path(row))  # data[index] decoded it
            shape = (height, width)
            input_box = pixel_box(box, image_shape=shape) if crop_to_face \
                else (0, 0, width, height)  # the crop FaceDataset cut
            landmarks = _landmarks_in_input(manifest, row, input_box=input_box,
                                            size=cfg.input_size)
        except ImageReadError as error:
            _skip(error, on_unreadable)
            continue
        try:
            placement, problem = input_placement(manifest, row, input_box=input_box,
                                                 image_shape=shape, aligned=aligned), ""
        except PlacementError as error:  # explained all the same; compare refuses it
            placement, problem = None, str(error)
        keypoints = item["keypoints"].numpy().astype(np.float64)
        yield ExplainItem(
            image=item["image"].numpy(), name=str(manifest.table["image"].iat[row]),
            label=CLASSES[int(item["label"])], row=row,
            crop_box=tuple(float(v) for v in box) if crop_to_face else None,
            keypoints=None if np.isnan(keypoints).any() else keypoints, landmarks=landmarks,
            placement=placement, placement_problem=problem)


def folder_items(folder: str | os.PathLike[str], cfg: ModelCfg, *,
                 on_unreadable: UnreadableHook | None = None) -> Iterator[ExplainItem]:
    """Every image in a folder (not its subfolders), each taken as a whole face image.

    Args:
        on_unreadable: as in ``manifest_items``.

    Raises:
        NeopainError: not a folder, no images in it; an image that cannot be read
            (``ImageReadError``) without ``on_unreadable``.
    """
    folder = Path(folder)
    if not os.path.isdir(folder):  # never raises, unlike Path.is_dir (long names)
        raise NeopainError(f"{folder}: not a folder; valid: a folder of face images "
                           f"({', '.join(IMAGE_SUFFIXES)})")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise NeopainError(f"{folder}: no images; valid: {', '.join(IMAGE_SUFFIXES)} files")
    for file in files:
        try:
            image = read_image(file)
        except ImageReadError as error:
            _skip(error, on_unreadable)
            continue
        height, width = image.shape[:2]
        yield ExplainItem(image=preprocess_crop(image, cfg), name=file.name,
                          placement=Placement(file, (width, height),
                                              (0.0, 0.0, float(width), float(height))))


def overlay(image: np.ndarray, heatmap: np.ndarray, cfg: ModelCfg, *,
            alpha: float = 0.45, min_side: int = 240) -> np.ndarray:
    """A BGR uint8 picture of the input with the heatmap over it (jet; peak = red)."""
    pixels = image.transpose(1, 2, 0) * np.asarray(cfg.std) + np.asarray(cfg.mean)
    face = np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if cfg.channel_order == "RGB":
        face = np.ascontiguousarray(face[:, :, ::-1])
    peak = float(heatmap.max())
    scaled = np.clip(heatmap / peak, 0, 1) if peak > 0 else np.zeros_like(heatmap)
    colours = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    picture = cv2.addWeighted(face, 1.0 - alpha, colours, alpha, 0.0)
    zoom = max(1, int(np.ceil(min_side / min(picture.shape[:2]))))
    return cv2.resize(picture, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)


def _batches(items: Iterable[ExplainItem], size: int) -> Iterator[list[ExplainItem]]:
    batch: list[ExplainItem] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _file_stem(item: ExplainItem, index: int) -> str:
    stem = Path(item.name).stem
    return f"{item.row:05d}_{stem}" if item.row is not None else f"{index:05d}_{stem}"


def explain_images(items: Iterable[ExplainItem], explainers: Mapping[str, Explainer], *,
                   cfg: ModelCfg, out: str | os.PathLike[str], target: str = "predicted",
                   total: int | None = None, batch_size: int = 16, overlays: bool = True,
                   on_progress: ProgressHook | None = None, backend: Backend = LOCAL,
                   open_explainers: Callable[[], Mapping[str, Explainer]] | None = None,
                   ) -> pd.DataFrame:
    """Explain every item with every explainer; write files into ``out`` (module docstring).

    Args:
        items: the images.
        explainers: method name → open explainer (all on the same model).
        cfg: the model's cfg (threshold, normalization for overlays).
        out: the output folder (created).
        target: ``predicted`` class, ``true`` class or ``both``.
        total: the number of items, for ``on_progress`` (None: unknown, reported as done).
        batch_size: images explained together.
        overlays: also write the overlay PNGs.
        on_progress: called ``(done, total)`` after each batch.
        backend: ``ray``: the batches are explained on Ray actors, each building its own
            explainers with ``open_explainers()`` (a picklable function; ``explainers`` then
            names the methods only through it) and torch on this process's thread count, taking
            as many CPUs; the files are the same.

    Returns:
        The explanations table (``EXPLANATION_COLUMNS``), also written as explanations.csv.

    Raises:
        NeopainError: an unknown target, ``true`` for an image without a label, no explainers,
            no images.
    """
    if target not in TARGETS:
        raise NeopainError(f"target={target!r} is not valid; valid: {', '.join(TARGETS)}")
    if not explainers:
        from neopain.explain.methods import METHOD_NAMES  # methods imports every explainer

        raise NeopainError(f"no explanation method given; valid: {', '.join(METHOD_NAMES)}")
    out = Path(out)
    for folder in ("heatmaps", "overlays", "regions"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    done = 0
    explain = partial(_explain_batch, cfg=cfg, out=out.absolute(), target=target,
                      overlays=overlays)
    if backend.is_ray:
        if open_explainers is None:
            raise NeopainError("the Ray backend needs open_explainers (a picklable function "
                               "that builds the explainers)")
        import torch

        threads = torch.get_num_threads()  # each actor's, and the CPUs it takes
        explained = ordered_map(partial(_with_actor_explainers, explain=explain),
                                _numbered(items, batch_size),
                                workers=1, initializer=keep_worker_state,
                                initargs=(_open_actor, open_explainers, threads),
                                backend=replace(backend, actor_threads=threads))
    else:
        explained = (explain(numbered, explainers=explainers)
                     for numbered in _numbered(items, batch_size))
    with closing(explained):
        for count, batch_records in explained:
            records += batch_records
            done += count
            if on_progress is not None:
                on_progress(done, total if total is not None else done)
    if not records:
        raise NeopainError("no images to explain: the folder or the fold's test subjects "
                           "gave none")
    table = pd.DataFrame(records, columns=list(EXPLANATION_COLUMNS))
    table.to_csv(out / "explanations.csv", index=False, lineterminator="\n")
    return table


def _numbered(items: Iterable[ExplainItem],
              size: int) -> Iterator[tuple[int, list[ExplainItem]]]:
    """Batches of ``size`` items, each with the index of its first item."""
    done = 0
    for batch in _batches(items, size):
        yield done, batch
        done += len(batch)


def _explain_batch(numbered: tuple[int, list[ExplainItem]], *,
                   explainers: Mapping[str, Explainer], cfg: ModelCfg, out: Path, target: str,
                   overlays: bool) -> tuple[int, list[dict]]:
    """Explain one batch (its first item's index, its items); write its files; (its size,
    its records)."""
    done, batch = numbered
    records = []
    images = np.stack([item.image for item in batch])
    prob = next(iter(explainers.values())).predict(images)
    pred = [CLASSES[int(p >= cfg.threshold)] for p in prob]
    wanted = []
    for item, predicted in zip(batch, pred):
        if target != "predicted" and item.label is None:
            raise NeopainError(f"{item.name}: target={target!r} needs the true class, but "
                               "the image has no label; use target='predicted'")
        classes = {"predicted": [predicted], "true": [item.label],
                   "both": [predicted, item.label]}[target]
        wanted.append(list(dict.fromkeys(classes)))
    labels = [_regions_file(item, done + i, out) for i, item in enumerate(batch)]
    for method, explainer in explainers.items():
        for round_ in range(max(len(w) for w in wanted)):
            chosen = [i for i, w in enumerate(wanted) if round_ < len(w)]
            heat = explainer.explain(images[chosen], target=[wanted[i][round_]
                                                             for i in chosen])
            for h, i in zip(heat, chosen):
                item, stem = batch[i], _file_stem(batch[i], done + i)
                records.append(_write(item, h, out=out, stem=stem, method=method,
                                      target=wanted[i][round_], pred=pred[i],
                                      prob=float(prob[i]), labels=labels[i], cfg=cfg,
                                      overlays=overlays))
    return len(batch), records


def _open_actor(open_explainers: Callable[[], Mapping[str, Explainer]],
                threads: int) -> Mapping[str, Explainer]:
    """A Ray actor's explainers, kept as long as it lives, with torch on the driver's thread
    count (the heatmaps' last bits depend on it)."""
    import torch

    torch.set_num_threads(threads)
    return open_explainers()


def _with_actor_explainers(numbered: tuple[int, list[ExplainItem]], *,
                           explain: Callable[..., tuple[int, list[dict]]]
                           ) -> tuple[int, list[dict]]:
    return explain(numbered, explainers=worker_state())


def _regions_file(item: ExplainItem, index: int,
                  out: Path) -> tuple[np.ndarray | None, str]:
    if item.keypoints is None and item.landmarks is None:
        return None, ""
    labels = region_map(item.image.shape[1:], keypoints=item.keypoints, landmarks=item.landmarks)
    name = f"regions/{_file_stem(item, index)}.npy"
    np.save(out / name, labels, allow_pickle=False)
    return labels, name


def _write(item: ExplainItem, heat: np.ndarray, *, out: Path, stem: str, method: str,
           target: str, pred: str, prob: float, labels: tuple[np.ndarray | None, str],
           cfg: ModelCfg, overlays: bool) -> dict:
    name = f"{stem}.{method}.{target}"
    heat_file, overlay_file = f"heatmaps/{name}.npy", f"overlays/{name}.png" if overlays else ""
    np.save(out / heat_file, heat.astype(np.float32), allow_pickle=False)
    if overlays:
        cv2.imwrite(str(out / overlay_file), overlay(item.image, heat, cfg))
    region_map_, region_file = labels
    shares = (region_shares(heat, region_map_) if region_map_ is not None
              else dict.fromkeys([*REGIONS, OUTSIDE], np.nan))
    return {"image": item.name, "row": "" if item.row is None else item.row,
            "label": item.label or "", "pred": pred, "prob_pain": round(prob, 6),
            "method": method, "target": target, "heatmap": heat_file, "overlay": overlay_file,
            "regions": region_file,
            "crop_box": "" if item.crop_box is None else json.dumps(
                [round(v, 2) for v in item.crop_box]),
            **{key: round(value, 6) for key, value in shares.items()},
            **_placement_cells(item, out)}


def _placement_cells(item: ExplainItem, out: Path) -> dict[str, str]:
    placed = item.placement
    if placed is None:
        return {"original_image": "", "original_size": "", "original_box": "",
                "placement_problem": item.placement_problem}
    return {"original_image": Path(os.path.relpath(os.path.abspath(placed.image),
                                                   os.path.abspath(out))).as_posix(),
            "original_size": json.dumps(list(placed.size)),
            "original_box": format_box(placed.box),
            "placement_problem": ""}
