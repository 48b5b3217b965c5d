"""YAML from files a user hands in: plain types only, with nesting and aliases bounded.

``yaml.safe_load`` builds only plain types, but its composer recurses once per nested
collection (RecursionError for 1,000 ``[``), and an alias is a reference: nine aliases of nine
aliases ("billion laughs") make a file of a few hundred bytes whose data, walked or printed,
holds 9⁹ items; ``&a [*a]`` makes a list that holds itself. ``parse_yaml`` refuses all three
while composing, as a ``yaml.YAMLError`` with the place in the file.
"""

from __future__ import annotations

import os

import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, SequenceNode

from neopain.data.files import FileReadError, read_regular_text

MAX_DEPTH = 32
"""Nesting allowed: far more than any neopain file needs."""
MAX_NODES = 100_000
"""Values in a document, aliases counted as often as they are used."""
MAX_BYTES = 1 << 20
"""The largest YAML file read: neopain's run configs are under 2 KB."""


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses collections nested deeper than ``max_depth``."""

    def __init__(self, text: str, *, max_depth: int) -> None:
        super().__init__(text)
        self.max_depth = max_depth
        self.depth_ = 0

    def compose_node(self, parent: Node | None, index: object) -> Node:
        opens = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        self.depth_ += opens
        try:
            if self.depth_ > self.max_depth:
                raise ComposerError(None, None, f"nested deeper than {self.max_depth} levels",
                                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth_ -= opens


def _expanded_size(root: Node, *, max_nodes: int) -> int:
    """How many values ``root`` holds with every alias expanded; each node is walked once."""
    sizes: dict[int, int] = {}
    walking: set[int] = set()

    def size(node: Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in walking:
            raise ComposerError(None, None, "an alias refers to a collection that holds it",
                                node.start_mark)
        walking.add(id(node))
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [item for pair in node.value for item in pair]
        total = 1 + sum(size(child) for child in children)
        if total > max_nodes:
            raise ComposerError(None, None, f"holds more than {max_nodes:,} values with its "
                                "aliases expanded", node.start_mark)
        walking.discard(id(node))
        sizes[id(node)] = total
        return total

    return size(root)


def parse_yaml(text: str, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> object:
    """``yaml.safe_load(text)`` with bounded nesting and alias expansion.

    Raises:
        yaml.YAMLError: not YAML (one document), nested deeper than ``max_depth``, more than
            ``max_nodes`` values with aliases expanded, or an alias inside its own anchor.
    """
    loader = _BoundedLoader(text, max_depth=max_depth)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, max_nodes=max_nodes)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml_mapping(path: str | os.PathLike[str], *, what: str) -> dict:
    """The ``key: value`` mapping of a YAML file ({} for an empty one).

    Args:
        path: the file.
        what: what it should be, said in errors ("a YAML run config").

    Raises:
        FileReadError: not a readable regular file of at most ``MAX_BYTES``, not UTF-8, not
            valid YAML (line and problem), too deep or too large (``parse_yaml``), or not a
            mapping.
    """
    text = read_regular_text(path, what=what, max_bytes=MAX_BYTES)
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "cannot be parsed"
        raise FileReadError(path, f"is not valid YAML{where}: {problem}; expected {what}"
                            ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FileReadError(path, f"holds a {type(data).__name__}, not key: value lines; "
                                  f"expected {what}")
    return data
