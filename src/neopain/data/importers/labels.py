"""Label maps: a dataset's original class (stimulus) → manifest label ``pain``, ``nopain`` or drop.

Classes are compared after stripping spaces and lower-casing, so ``Pain`` and ``pain`` are one
class. A map is a plain dict ``{class: target}`` with targets ``pain``, ``nopain`` or ``drop``
(leave the row out of the manifest; the import counts it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from neopain.errors import NeopainError

LABEL_TARGETS = ("pain", "nopain", "drop")

DEFAULT_LABEL_MAP: Mapping[str, str] = MappingProxyType({
    "pain": "pain",
    "pain_post_sucrose": "pain",
    "nopain": "nopain",
    "no_pain": "nopain",
    "rest": "nopain",
    "air": "nopain",
    "friction": "nopain",
    "cry": "nopain",
    "sucrose": "nopain",
    "yawn": "nopain",
    "sneeze": "nopain",
})
"""iCOPE and UNIFESP classes: the painful procedure (heel lance, also after sucrose) is pain;
rest and every non-painful stimulus (air draught, friction, crying, sucrose, yawn, sneeze) is
no pain. ``no_pain`` is the spelling some copies of the published table use."""

_REST_CLASSES = ("pain", "nopain", "no_pain", "rest")

PAIN_VS_REST_LABEL_MAP: Mapping[str, str] = MappingProxyType({
    key: (DEFAULT_LABEL_MAP[key] if key in _REST_CLASSES else "drop") for key in DEFAULT_LABEL_MAP
})
"""Pain against rest only, as some published comparisons did: every other stimulus is dropped."""


def class_key(text: str) -> str:
    """How a class is looked up in a label map: stripped and lower-cased."""
    return text.strip().lower()


def check_label_map(label_map: Mapping[str, str]) -> dict[str, str]:
    """A copy with class keys as ``class_key`` gives them.

    Raises:
        NeopainError: an empty class, a target other than pain, nopain or drop, or two spellings
            of one class with different targets.
    """
    checked: dict[str, str] = {}
    for name, target in label_map.items():
        key = class_key(str(name))
        if not key:
            raise NeopainError(f"label_map has an empty class name (mapped to {target!r}); "
                               "every entry needs a class")
        if target not in LABEL_TARGETS:
            raise NeopainError(f"label_map maps class {name!r} to {target!r}; "
                               f"valid targets: {', '.join(LABEL_TARGETS)}")
        if checked.get(key, target) != target:
            raise NeopainError(f"label_map maps class {key!r} to both {checked[key]!r} and "
                               f"{target!r} (classes ignore case); keep one")
        checked[key] = target
    return checked


def parse_label_map(
    entries: str | Sequence[str], *, base: Mapping[str, str] = DEFAULT_LABEL_MAP
) -> dict[str, str]:
    """A label map from ``CLASS=TARGET`` entries (comma-separated) laid over ``base``.

    >>> parse_label_map("air=drop,grimace=pain")["grimace"]
    'pain'

    Raises:
        NeopainError: an entry that is not ``CLASS=TARGET`` or has an invalid target.
    """
    texts = [entries] if isinstance(entries, str) else list(entries)
    merged = check_label_map(base)
    given: dict[str, str] = {}
    for text in texts:
        for entry in filter(None, (part.strip() for part in text.split(","))):
            name, equals, target = entry.partition("=")
            if not equals or not name.strip():
                raise NeopainError(f"label map entry {entry!r} is not CLASS=TARGET; "
                                   f"e.g. air=nopain; targets: {', '.join(LABEL_TARGETS)}")
            given[name.strip()] = target.strip()
    merged.update(check_label_map(given))
    return merged


def unknown_class_message(text: str, label_map: Mapping[str, str]) -> str:
    """What to say about a class the label map lacks: the known classes and how to add it."""
    key = class_key(text) or "CLASS"
    return (f"is not a class of the label map; known: {', '.join(sorted(label_map))}; "
            f"add it with --label-map {key}=pain|nopain|drop (label_map in Python)")
