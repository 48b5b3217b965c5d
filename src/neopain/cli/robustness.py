"""``neopain robustness MODEL``: a model's metrics when its face crops are corrupted.

The library is imported inside the command: ``neopain --help`` must not pay for torch.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from neopain.cli.console import (
    console, err_console, fail, number_text, print_skipped, progress_bar,
)
from neopain.cli.dataset import fail_with
from neopain.errors import NeopainError


def _is_training_model(model: str) -> bool:
    """Whether ``model`` names a training run, one of its folds, or a fold's model.pt."""
    return os.path.isdir(model) or Path(model).name == "model.pt"


def _work(model: str, manifest: Path | None, limit: int | None):
    """[(open_predictor, faces)] to score: every fold of a run on its own test subjects, or one
    named model (an .onnx file, nfcs) on every row of ``manifest``.

    No network is kept here: each fold's split is read and its network dropped, and
    ``open_predictor()`` builds the model when its turn comes, so that only one fold's weights
    are in memory at a time (a 10-fold VGG16 run holds 10 × 550 MB otherwise).
    """
    from neopain.data.manifest import load_manifest
    from neopain.evaluation.robustness import manifest_faces
    from neopain.export.torch_runtime import RunPredictor, fold_dirs
    from neopain.prediction import load_predictor, predictor_kinds
    from neopain.runs import load_fold, select_rows

    if not os.path.exists(model) and model not in predictor_kinds():
        raise NeopainError(f"MODEL {model}: no such file or folder; valid: a training run "
                           "(runs/NAME), one of its folds (runs/NAME/fold_K or its model.pt), "
                           "an exported .onnx file, or a model by name (neopain models list)")
    if not _is_training_model(model):
        if manifest is None:
            raise NeopainError(f"MODEL {model}: give --manifest with the images to score (an "
                               ".onnx file or nfcs has no test subjects of its own)")
        data = load_manifest(manifest)
        rows = select_rows(data, limit=limit)
        return [(functools.partial(load_predictor, model), manifest_faces(data, rows=rows))]
    work = []
    for folder in fold_dirs(model):
        fold = load_fold(folder)
        number, path, subjects = fold.fold or 0, manifest or fold.manifest, fold.test_subjects
        del fold  # its network: the next fold's must not join it in memory
        if path is None:
            raise NeopainError(f"{folder}: the run's config.yaml names no manifest; give "
                               "--manifest")
        data = load_manifest(path)
        rows = select_rows(data, subjects=subjects, limit=limit)
        work.append((functools.partial(RunPredictor, folder),
                     manifest_faces(data, rows=rows, fold=number)))
    return work


def _check_scored(scores, names: list[str]) -> None:
    """Refuse a result with nothing but the clean condition: every corruption asked for
    covers a facial region that no face shows (or no face has keypoints or landmarks).

    Raises:
        NeopainError: naming the corruptions and regions.
    """
    from neopain.evaluation.corruptions import CORRUPTIONS
    from neopain.evaluation.robustness import CLEAN

    if (scores["corruption"] != CLEAN).any():
        return
    asked = " ".join(f"--corruption {name}" for name in names)
    regions = " or ".join(dict.fromkeys(CORRUPTIONS[name].region for name in names))
    raise NeopainError(f"no face could be scored under {asked}: none shows the {regions} or "
                       "has keypoints or landmarks; valid: a manifest with keypoints or "
                       "landmarks (neopain faces detect) whose face boxes show the region, or a "
                       "corruption of the whole crop (blur, noise, …)")


def _print_tables(table, *, title: str) -> None:
    """Accuracy and AUC per corruption and severity, pooled over folds, and the share of faces
    the model could assess where it could not assess them all."""
    from neopain.evaluation.robustness import CLEAN

    pooled = table[table["fold"] == "all"]
    severities = sorted(set(pooled["severity"]) - {0})
    clean = pooled[pooled["corruption"] == CLEAN].iloc[0]
    shown = [("accuracy", "accuracy"), ("auc", "AUC")]
    if (pooled["assessable"] < 1).any():
        shown.append(("assessable", "share of faces the model could assess"))
    for metric, what in shown:
        out = Table(title=Text(f"{title}: {what}"),
                    caption=None if metric == "assessable" else
                    "over the faces the model could assess; n/a: undefined (one class, or none "
                    "assessable)")
        out.add_column("corruption", no_wrap=True)
        for severity in ["clean", *severities]:
            out.add_column(str(severity), justify="right", no_wrap=True)
        for name in dict.fromkeys(pooled["corruption"]):
            if name != CLEAN:
                part = pooled[pooled["corruption"] == name].set_index("severity")
                out.add_row(name, number_text(clean[metric]),
                            *(number_text(part.at[s, metric]) for s in severities))
        console.print(out)
    fewer = pooled[pooled["images"] < clean["images"]].drop_duplicates("corruption")
    for _, row in fewer.iterrows():
        err_console.print(Text(
            f"note: {row['corruption']} scored {row['images']} of {clean['images']} images (the "
            f"others show no such region or have no keypoints or landmarks); their clean "
            f"accuracy is {number_text(row['clean_accuracy'])}", style="yellow"))


def robustness(
    model: Annotated[str, typer.Argument(
        help="A training run (runs/NAME: each fold scores its own test subjects), one fold "
             "(runs/NAME/fold_K), an exported .onnx file, or nfcs (the last two need "
             "--manifest).")],
    out: Annotated[Path, typer.Option(help="Folder for robustness.csv, scores.csv and "
                                           "robustness.png.")],
    manifest: Annotated[Optional[Path], typer.Option(
        help="The images to score: every row (for an .onnx file or nfcs), or the fold's test "
             "subjects' rows (for a run; default the run's manifest).")] = None,
    corruption: Annotated[Optional[list[str]], typer.Option(
        help="Only this corruption (repeatable); default all.")]
    = None,
    severity: Annotated[Optional[list[int]], typer.Option(
        help="Only this severity, 1 (mild) to 5 (severe) (repeatable); default all.")] = None,
    seed: Annotated[int, typer.Option(
        help="Fixes noise, patch positions and rotation and shift directions.")] = 0,
    limit: Annotated[Optional[int], typer.Option(
        help="Score at most this many images per fold.")] = None,
) -> None:
    """Re-score each fold's test images under corruptions at graded severities.

    Corruptions: brightness (darker), downscale, blur, noise, jpeg, rotation,
    translation, patches, and occlude_<region> for each facial region (forehead,
    brows, eyes, nose, nasolabial, mouth, chin, cheeks; from the manifest's
    keypoints or landmarks). Prints accuracy and AUC per corruption and severity,
    pooled over folds, and the share of faces the model could assess where it could
    not assess them all (nfcs); writes robustness.csv (also per fold), scores.csv
    (every image under every condition) and robustness.png. See docs/robustness.md.
    """
    from neopain.evaluation.corruptions import CORRUPTIONS, SEVERITIES
    from neopain.evaluation.robustness import (
        CLEAN, conditions, robustness_table, score_corruptions,
    )
    from neopain.evaluation.robustness_report import write_robustness

    import pandas as pd

    names = corruption or list(CORRUPTIONS)
    severities = severity or list(SEVERITIES)
    if limit is not None and limit < 1:
        fail(f"--limit {limit} is not valid; valid: a whole number >= 1")
    try:
        conditions(names, severities=severities)
        work = _work(model, manifest, limit)
    except NeopainError as error:
        fail_with(error)
    scores, names_seen = [], []
    total = sum(len(faces) for _, faces in work)
    try:
        with progress_bar(f"scoring {len(names)} corruptions") as update:
            done = 0
            for open_predictor, faces in work:
                with open_predictor() as predictor:
                    scores.append(score_corruptions(
                        predictor, faces, corruptions=names, severities=severities, seed=seed,
                        on_unreadable=print_skipped,
                        on_progress=lambda n, _, start=done: update(start + n, total)))
                    names_seen.append(predictor.name)
                done += len(faces)
        pooled = pd.concat(scores, ignore_index=True)
        _check_scored(pooled, names)
        table = robustness_table(pooled)
        scored = len(pooled[pooled["corruption"] == CLEAN].drop_duplicates(["fold", "row"]))
        title = f"{names_seen[0] if len(names_seen) == 1 else model}: {scored} images"
        written = write_robustness(pooled, table, out, title=title)
    except NeopainError as error:
        fail_with(error)
    _print_tables(table, title=title)
    for key in ("table", "scores", "figure"):
        console.print(f"wrote {escape(str(written[key]))}", highlight=False)
