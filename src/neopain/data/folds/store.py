"""folds.json: write a FoldPlan as readable JSON, read one back checking every key."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from neopain import __version__
from neopain.data.files import FileReadError, read_regular_text
from neopain.data.json_text import parse_json
from neopain.data.folds.plan import PROTOCOLS, SPLITS, Fold, FoldPlan, FoldsError
from neopain.data.manifest import sha256_file

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_LISTED = 20
_MAX_FOLDS_BYTES = 2**28  # a folds file lists image paths: millions fit


def plan_to_dict(plan: FoldPlan) -> dict:
    """The JSON object of folds.json (key order fixed, subjects sorted; no timestamp)."""
    return {
        "neopain_version": __version__,
        "protocol": plan.protocol,
        "seed": plan.seed,
        "k": plan.k,
        "params": plan.params,
        "manifest": plan.manifest_name,
        "manifest_sha256": plan.manifest_sha256,
        "folds": [
            {"index": fold.index, **{name: list(getattr(fold, name)) for name in SPLITS}}
            for fold in plan.folds
        ],
    }


def save_folds(plan: FoldPlan, path: str | os.PathLike[str]) -> Path:
    """Write folds.json (UTF-8, indent 2); the same plan always gives the same bytes.

    Missing parent folders are created. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan_to_dict(plan), indent=2) + "\n", encoding="utf-8")
    logger.debug("saved %d %s folds to %s", len(plan.folds), plan.protocol, path)
    return path


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fold_problems(value: object, position: int) -> list[str]:
    where = f"folds[{position}]"
    if not isinstance(value, dict):
        return [f"{where}: must be an object with index, train, val, test; got {value!r:.40}"]
    problems = []
    if value.get("index") != position or not _is_int(value.get("index")):
        problems.append(f"{where} (fold {position}): 'index' must be {position}; "
                        f"got {value.get('index')!r:.40}")
    for name in SPLITS:
        subjects = value.get(name)
        ok = isinstance(subjects, list) and all(isinstance(s, str) and s for s in subjects)
        if not ok:
            got = "nothing" if name not in value else f"{subjects!r:.40}"
            problems.append(f"{where} (fold {position}): {name!r} must be a list of subject "
                            f"ids (non-empty strings); got {got}")
    return problems


def _problems(data: object) -> list[str]:
    """Everything wrong with the structure of a folds.json object."""
    if not isinstance(data, dict):
        return [f"the file must hold a JSON object with protocol, k, folds...; got {data!r:.40}"]
    problems = []
    checks = {
        "protocol": (lambda v: v in PROTOCOLS, f"one of {', '.join(PROTOCOLS)}"),
        "seed": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
        "k": (lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
        "params": (lambda v: isinstance(v, dict), "an object"),
        "manifest": (lambda v: isinstance(v, str), "a file name (string)"),
        "manifest_sha256": (lambda v: isinstance(v, str) and (v == "" or _SHA256.fullmatch(v)),
                            "64 lowercase hex digits, or \"\""),
        "folds": (lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list of folds"),
    }
    for key, (valid, what) in checks.items():
        if key not in data:
            problems.append(f"key {key!r} is missing; valid: {what}")
        elif not valid(data[key]):
            problems.append(f"key {key!r} is {data[key]!r:.40}; valid: {what}")
    folds = data.get("folds")
    if isinstance(folds, list):
        if _is_int(data.get("k")) and folds and len(folds) != data["k"]:
            problems.append(f"key 'folds' has {len(folds)} folds but 'k' is {data['k']}")
        for position, fold in enumerate(folds):
            problems += _fold_problems(fold, position)
    return problems


def _error(path: Path, problems: list[str]) -> FoldsError:
    n = len(problems)
    lines = [f"{path} is not a valid folds file: {n} problem{'' if n == 1 else 's'}"]
    lines += [f"  {problem}" for problem in problems[:_MAX_LISTED]]
    if n > _MAX_LISTED:
        lines.append(f"  ... and {n - _MAX_LISTED} more")
    return FoldsError("\n".join(lines))


def _read_json(path: Path) -> object:
    try:
        text = read_regular_text(path, what="JSON written by neopain (a folds.json file)",
                                 max_bytes=_MAX_FOLDS_BYTES)
    except FileReadError as error:
        if error.missing:
            raise FoldsError(f"{path}: file not found; make one with `neopain folds make`") \
                from None
        raise FoldsError(f"{path}: {error.reason}") from None
    try:
        return parse_json(text)
    except json.JSONDecodeError as error:
        problem = f"line {error.lineno}, column {error.colno}: not valid JSON ({error.msg})"
        raise _error(path, [problem]) from None


def load_folds(
    path: str | os.PathLike[str], *, manifest: str | os.PathLike[str] | None = None
) -> FoldPlan:
    """Read folds.json, checking its structure; with ``manifest``, also that it was made for it.

    Raises:
        FoldsError: unreadable file, bad JSON, missing or mistyped keys (named with their fold),
            or, with ``manifest``, a manifest whose sha256 differs from the one recorded.
    """
    path = Path(path)
    data = _read_json(path)
    problems = _problems(data)
    if problems:
        raise _error(path, problems)
    folds = tuple(
        Fold(index=fold["index"], train=fold["train"], val=fold["val"], test=fold["test"])
        for fold in data["folds"]
    )
    plan = FoldPlan(protocol=data["protocol"], seed=data["seed"], k=data["k"],
                    manifest_sha256=data["manifest_sha256"], folds=folds,
                    params=data["params"], manifest_name=data["manifest"])
    if manifest is not None:
        _check_manifest(plan, path, Path(manifest))
    logger.debug("loaded %d %s folds from %s", len(folds), plan.protocol, path)
    return plan


def _check_manifest(plan: FoldPlan, path: Path, manifest: Path) -> None:
    try:
        digest = sha256_file(manifest)
    except OSError as error:
        raise FoldsError(f"{manifest} cannot be read: {error.strerror}") from None
    made_for = f" ({plan.manifest_name})" if plan.manifest_name else ""
    if not plan.manifest_sha256:
        raise FoldsError(
            f"{path} records no manifest sha256, so it cannot be checked against {manifest}; "
            f"make the folds again: neopain folds make {manifest} --out {path.name}"
        )
    if digest != plan.manifest_sha256:
        raise FoldsError(
            f"{path} was made for a different manifest: it records sha256 "
            f"{plan.manifest_sha256[:12]}…{made_for}, but {manifest} has {digest[:12]}…; "
            f"use the manifest it was made from, or make the folds again: "
            f"neopain folds make {manifest} --out {path.name} ..."
        )
