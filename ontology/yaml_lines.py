"""Where each value of a YAML document stands: the line of a key path, so that errors in user files name the line."""

from __future__ import annotations

from collections.abc import Sequence

import yaml

LineMap = dict[tuple[str | int, ...], int]


def line_map(node: yaml.Node, path: tuple[str | int, ...] = ()) -> LineMap:
    """The 1-based line of every key path in the node tree (a mapping key's line for the value under it)."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            lines.update(line_map(value, sub))
            lines[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(line_map(item, (*path, i)))
    return lines


def line_of(lines: LineMap, path: Sequence[str | int]) -> int | None:
    """The line of `path`, or of its deepest ancestor the document holds (a missing key is reported at its parent)."""
    current: tuple[str | int, ...] = ()
    for part in path:
        if (*current, part) in lines:
            current = (*current, part)
    return lines.get(current)
