"""Reading user-supplied YAML safely: a size limit, a nesting limit and alias expansion bounded, for every layer.

YAML aliases let a few hundred bytes stand for billions of nodes (the 'billion laughs' bomb): any code that walks the
document (validation, line maps, re-dumping) then runs for minutes. A document is checked before it is constructed:
its size, its depth, and the number of nodes it stands for once every alias is expanded.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 1_048_576  # 1 MiB of YAML text
MAX_NODES = 100_000  # nodes a document may stand for once aliases are expanded
MAX_DEPTH = 100  # nesting levels


class YamlLimitError(yaml.YAMLError):
    """A YAML document exceeds a safety limit (size, depth, or alias expansion); the message names the source."""


def compose_yaml(
    text: str,
    source: str,
    loader: type[yaml.SafeLoader] = yaml.SafeLoader,
    max_bytes: int = MAX_BYTES,
    max_nodes: int = MAX_NODES,
) -> yaml.Node | None:
    """The checked node tree of one YAML document (None when empty); YamlLimitError or YAMLError otherwise."""
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise YamlLimitError(f"{source}: YAML is larger than {max_bytes} bytes")
    reader = loader(text)
    try:
        try:
            node = reader.get_single_node()
        except RecursionError:
            raise YamlLimitError(f"{source}: YAML is nested too deep (more than {MAX_DEPTH} levels)") from None
    finally:
        reader.dispose()
    if node is not None:
        _check_expansion(node, source, max_nodes)
    return node


def load_yaml(
    text: str,
    source: str,
    loader: type[yaml.SafeLoader] = yaml.SafeLoader,
    max_bytes: int = MAX_BYTES,
    max_nodes: int = MAX_NODES,
) -> Any:
    """The Python value of one YAML document after the checks of `compose_yaml` (SafeLoader or a subclass)."""
    reader = loader(text)
    try:
        node = compose_yaml(text, source, loader, max_bytes, max_nodes)
        return None if node is None else reader.construct_document(node)
    finally:
        reader.dispose()


def _check_expansion(root: yaml.Node, source: str, max_nodes: int) -> None:
    """Refuse a tree deeper than MAX_DEPTH, or standing for more than `max_nodes` nodes with aliases expanded."""
    sizes: dict[int, int] = {}
    # iterative post-order walk; a node reached again through an alias reuses its computed size
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    open_nodes: set[int] = set()
    while stack:
        node, depth, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > max_nodes:
                raise YamlLimitError(f"{source}: YAML aliases expand to more than {max_nodes} nodes; refused")
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise YamlLimitError(f"{source}: YAML alias refers to itself (endless expansion); refused")
        if depth > MAX_DEPTH:
            raise YamlLimitError(f"{source}: YAML is nested too deep (more than {MAX_DEPTH} levels)")
        open_nodes.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node) if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
