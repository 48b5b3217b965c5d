"""Folder trees → manifest: the label, subject and more are read from each image's path.

A pattern is matched against each image's path under the root, with ``/`` between folders:

- a template (the default is ``{label}/{subject}/{*}``): ``{field}`` captures text within one
  path part (never a ``/``) into column ``field``, ``{*}`` matches any text there without keeping
  it, everything else must appear literally. A field takes the shortest text that lets the whole
  path match, so ``{subject}_{label}_{*}`` reads ``S04_air_1.jpg`` as subject ``S04``, label
  ``air``.
- a regular expression after ``re:`` with named groups, e.g.
  ``re:(?P<source>[^/]+)/(?P<subject>S\\d+)_(?P<label>[a-z]+)_\\d+\\.jpg``.

``subject`` and ``label`` are required; ``source`` and ``stimulus`` fill those columns, other
names become extra columns. Labels go through the label map; the class itself is kept as
``stimulus`` unless the pattern captures one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from neopain.data.importers.common import (
    IMAGE_SUFFIXES,
    Draft,
    ImportResult,
    ImportTableError,
    ProgressHook,
    check_folder,
    check_out,
    finish,
    manifest_path,
)
from neopain.data.importers.labels import (
    DEFAULT_LABEL_MAP,
    check_label_map,
    class_key,
    unknown_class_message,
)
from neopain.data.manifest import COLUMNS
from neopain.data.tables import Problem
from neopain.errors import NeopainError

DEFAULT_PATTERN = "{label}/{subject}/{*}"
MAX_UNMATCHED_LISTED = 5
_FIELD = re.compile(r"\{([^{}]*)\}")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression a folder pattern stands for (see the module docstring).

    >>> compile_pattern("{label}/{subject}/{*}").fullmatch("pain/S01/a.jpg")["subject"]
    'S01'

    Raises:
        NeopainError: a malformed template or regex, a bad or repeated field name, ``image``
            captured, or ``subject`` or ``label`` not captured.
    """
    if pattern.startswith("re:"):
        try:
            regex = re.compile(pattern[3:])
        except re.error as error:
            raise NeopainError(f"pattern={pattern!r} is not a valid regular expression "
                               f"({error})") from None
    else:
        parts, names = [], []
        for i, piece in enumerate(_FIELD.split(pattern)):
            if i % 2 == 0:
                if "{" in piece or "}" in piece:
                    raise NeopainError(f"pattern={pattern!r} has an unmatched brace; fields are "
                                       "written {name}, e.g. {label}/{subject}/{*}")
                parts.append(re.escape(piece))
            elif piece == "*":
                parts.append("[^/]*?")
            elif not piece.isidentifier() or piece in names:
                what = "repeats" if piece in names else "has a bad field name"
                raise NeopainError(f"pattern={pattern!r} {what} {{{piece}}}; fields are "
                                   "distinct names like {label} or {subject}, or {*}")
            else:
                names.append(piece)
                parts.append(f"(?P<{piece}>[^/]+?)")
        regex = re.compile("".join(parts))
    groups = set(regex.groupindex)
    if "image" in groups:
        raise NeopainError(f"pattern={pattern!r} captures image; the image is the matched file")
    absent = [name for name in ("subject", "label") if name not in groups]
    if absent:
        raise NeopainError(f"pattern={pattern!r} does not capture {' and '.join(absent)}; "
                           f"e.g. {DEFAULT_PATTERN} or re:(?P<label>\\w+)/(?P<subject>\\w+)/.*")
    return regex


def list_images(root: Path) -> list[str]:
    """Image files under ``root`` as sorted ``/``-separated relative paths.

    Files with a suffix in ``IMAGE_SUFFIXES`` (any case) count; names starting with ``.``
    (hidden files and folders, macOS ``._`` copies) do not.
    """
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        relative = Path(folder).relative_to(root)
        found += [(relative / name).as_posix() for name in files
                  if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def import_folder(
    root: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    pattern: str = DEFAULT_PATTERN,
    label_map: Mapping[str, str] = DEFAULT_LABEL_MAP,
    on_progress: ProgressHook | None = None,
) -> ImportResult:
    """Import the images in a folder tree, reading subject and label from their paths.

    >>> import_folder("photos", pattern="{source}/{label}/{subject}_{*}",
    ...               out="photos/manifest.csv")  # doctest: +SKIP

    Args:
        root: the folder; its images (jpg, jpeg, png, bmp, any case) are found at any depth.
        out: the manifest to write; image paths in it are relative to its folder.
        pattern: a template or ``re:`` regex matched against each path under ``root``.
        label_map: class → pain, nopain or drop; unknown classes are errors.
        on_progress: called as ``on_progress(done, total)`` over the images.

    Returns:
        The result; ``unmatched`` lists the images the pattern did not match (not imported).

    Raises:
        NeopainError: bad arguments. ImportTableError: every bad file (unknown class, ...), or
            no image matched.
    """
    regex = compile_pattern(pattern)
    label_map = check_label_map(label_map)
    root_path = check_folder(root, name="root")
    out_path = check_out(out, source=root_path)
    images = list_images(root_path)
    fields = [name for name in regex.groupindex if name not in ("subject", "label")]
    extras = [name for name in fields if name not in COLUMNS]
    draft = Draft(source=root_path)
    unmatched, matched = [], 0
    for i, relative in enumerate(images):
        if on_progress is not None:
            on_progress(i, len(images))
        match = regex.fullmatch(relative)
        if match is None:
            unmatched.append(relative)
            continue
        matched += 1
        cells = _match_cells(draft, relative, match, fields=fields, label_map=label_map)
        if cells is not None:
            cells["image"] = manifest_path(root_path / relative, out_dir=out_path.parent)
            draft.add(relative, {name: cells.get(name, "") for name in [*COLUMNS, *extras]})
    if on_progress is not None:
        on_progress(len(images), len(images))
    if matched == 0:
        examples = ", ".join(unmatched[:MAX_UNMATCHED_LISTED]) or "(none)"
        message = (f"no image path matches pattern {pattern!r} ({len(images)} images found; "
                   f"e.g. {examples})")
        raise ImportTableError(root_path, [Problem(None, None, None, message)])
    return finish(draft, out=out_path, rows_read=matched, allow_missing=False,
                  unmatched=unmatched)


def _match_cells(draft: Draft, relative: str, match: re.Match[str], *, fields: list[str],
                 label_map: Mapping[str, str]) -> dict[str, str] | None:
    """The manifest cells a matched path gives (but the image), its problems added to
    ``draft``; None when the label map drops it (counted in ``draft.dropped``)."""
    original = (match["label"] or "").strip()
    target = label_map.get(class_key(original))
    if target is None:
        message = ("is empty; every image needs a class" if not original
                   else unknown_class_message(original, label_map))
        draft.problem(relative, "label", original, message)
    elif target == "drop":
        draft.dropped[class_key(original)] += 1
        return None
    cells = {name: (match[name] or "") for name in fields}
    cells.update(subject=match["subject"] or "", label=target or "")
    cells.setdefault("stimulus", original)
    return cells
