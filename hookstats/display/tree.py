"""Hook points as a tree, for tables: each row under its nearest shown ancestor, named by what
its own name adds (``attn`` under ``blocks.0``), and runs of identical numbered siblings
collapsed into one node (``blocks.0–11 ×12``) that stands for all their rows.

Rules (pure functions of the rows' names, order and a per-row signature; nothing here formats):

* **Parent**: the longest dotted prefix of a name that is itself a row; the root ``(model)``
  holds every other row. A row whose parent is not selected hangs under the nearest one that
  is, and its label keeps the missing segments (``blocks.0.attn`` under ``(model)``).
* **Order**: rows in the order given (execution order, never-called rows last); a node sits
  where the first row of its subtree is, so a never-called container (a ``ModuleList``) is
  placed with its children.
* **Collapse**: consecutive siblings whose labels end in consecutive integers (``h.0``,
  ``h.1``, ...) and whose subtrees have the same structure (each row's ``signature`` and the
  children's labels, recursively) become one node ``h.0–11`` (×12) whose rows are all the
  members' rows; the members' children are merged position by position. A never-called
  container whose children are one such group is folded into it (``h.0–11 ×12`` instead of
  ``h`` then ``0–11 ×12``).

May import: :mod:`hookstats.points` (the root's name).

Example:
    >>> rows = [{"hook_point": n, "t": "L"} for n in ["(model)", "h.0", "h.0.fc", "h.1",
    ...         "h.1.fc", "head"]]
    >>> tree = build_tree(rows, signature=lambda row: row["t"])
    >>> [(n.label, level, n.count) for n, level in walk(tree)]
    [('(model)', 0, 1), ('h.0–1', 1, 2), ('fc', 2, 2), ('head', 1, 1)]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..points import ROOT_NAME

__all__ = ["Node", "auto_depth", "build_tree", "count_rows", "max_level", "walk"]

Row = Mapping[Any, Any]
Signature = Callable[[Row], Hashable]
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


@dataclass(slots=True, eq=False)
class Node:
    """One row of a tree table: a hook point, or a group of identical ones.

    Attributes:
        path: the full name (``transformer.h.0–11.attn`` for a merged child of a group).
        label: the name shown in the tree, relative to the parent node.
        rows: the frame rows it stands for (one per module it covers).
        children: the nodes under it, in tree order.
        repeat: how many consecutive siblings this group collapsed (1 for a plain node).
        order: the first row index in its subtree.
    """

    path: str
    label: str
    rows: list[Row]
    children: list[Node] = field(default_factory=list)
    repeat: int = 1
    order: int = 0

    @property
    def count(self) -> int:
        """How many modules this node stands for (``×count`` in a flat list)."""
        return len(self.rows)


def _parent_index(name: str, index: Mapping[str, int]) -> int | None:
    if name == ROOT_NAME:
        return None
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        found = index.get(".".join(parts[:cut]))
        if found is not None:
            return found
    return index.get(ROOT_NAME)


def _relative(name: str, parent: str) -> str:
    return name if parent == ROOT_NAME else name[len(parent) + 1 :]


def _set_order(node: Node) -> int:
    for child in node.children:
        node.order = min(node.order, _set_order(child))
    node.children.sort(key=lambda child: child.order)
    return node.order


def build_tree(
    rows: Sequence[Row],
    *,
    signature: Signature,
    collapse: bool = True,
    leaves: bool = True,
    name_key: str = "hook_point",
) -> list[Node]:
    """The tree of ``rows`` (the top-level nodes), collapsed unless ``collapse=False``.

    ``signature(row)`` is what two modules must share to be "the same structure" (say, their
    type and parameter count); their children's labels and signatures must match as well.
    ``leaves=False`` collapses only nodes with children (for rows that carry no module type,
    where equal numbers alone would merge a ReLU with a Flatten).
    """
    names = [str(row[name_key]) for row in rows]
    index = {name: i for i, name in enumerate(names)}
    nodes = [
        Node(name, name, [row], order=i)
        for i, (name, row) in enumerate(zip(names, rows, strict=True))
    ]
    roots: list[Node] = []
    for node in nodes:
        parent = _parent_index(node.path, index)
        if parent is None:
            roots.append(node)
        else:
            nodes[parent].children.append(node)
            node.label = _relative(node.path, names[parent])
    for root in roots:
        _set_order(root)
    roots.sort(key=lambda node: node.order)
    return _collapse(roots, _Structure(signature, leaves)) if collapse else roots


class _Structure:
    """Memoised structural keys of plain (not yet collapsed) subtrees."""

    def __init__(self, signature: Signature, leaves: bool) -> None:
        self._signature = signature
        self.leaves = leaves
        self._keys: dict[Node, Hashable] = {}  # by identity (Node has eq=False)

    def key(self, node: Node) -> Hashable:
        found = self._keys.get(node)
        if found is None:
            children = tuple((child.label, self.key(child)) for child in node.children)
            found = (self._signature(node.rows[0]), children)
            self._keys[node] = found
        return found


def _numbered(label: str) -> tuple[str, int] | None:
    match = _NUMBERED.match(label)
    if match is None or (match.group(1) and not match.group(1).endswith(".")):
        return None
    return match.group(1), int(match.group(2))


def _continues(previous: Node, node: Node, structure: _Structure) -> bool:
    a, b = _numbered(previous.label), _numbered(node.label)
    return (
        a is not None
        and b is not None
        and a[0] == b[0]
        and b[1] == a[1] + 1
        and previous.repeat == node.repeat == 1
        and (structure.leaves or bool(previous.children))
        and structure.key(previous) == structure.key(node)
    )


def _collapse(siblings: list[Node], structure: _Structure) -> list[Node]:
    merged: list[Node] = []
    start = 0
    while start < len(siblings):
        end = start + 1
        while end < len(siblings) and _continues(siblings[end - 1], siblings[end], structure):
            end += 1
        run = siblings[start:end]
        merged.append(_merge(run) if len(run) > 1 else run[0])
        start = end
    for node in merged:
        node.children = _collapse(node.children, structure)
    return [_fold(node) for node in merged]


def _range_name(name: str, first: int, last: int) -> str:
    return f"{name[: len(name) - len(str(first))]}{first}–{last}"


def _merge(run: list[Node]) -> Node:
    first = run[0]
    numbered = _numbered(first.label)
    assert numbered is not None  # _continues checked it
    last = _numbered(run[-1].label)
    assert last is not None
    path = _range_name(first.path, numbered[1], last[1])
    group = Node(
        path,
        _range_name(first.label, numbered[1], last[1]),
        [row for member in run for row in member.rows],
        repeat=len(run),
        order=first.order,
    )
    group.children = _merge_children([member.children for member in run], path)
    return group


def _merge_children(members: list[list[Node]], path: str) -> list[Node]:
    """The members' children merged position by position (their structures are equal)."""
    merged = []
    for same in zip(*members, strict=True):
        head = same[0]
        node = Node(
            f"{path}.{head.label}",
            head.label,
            [row for member in same for row in member.rows],
            order=head.order,
        )
        node.children = _merge_children([member.children for member in same], node.path)
        merged.append(node)
    return merged


def _fold(node: Node) -> Node:
    """A never-called container whose children are one group becomes that group."""
    if len(node.children) != 1 or node.children[0].repeat == 1:
        return node
    group = node.children[0]
    if any(row.get("calls", 1) != 0 for row in node.rows):
        return node
    if all("parameters" in row for row in node.rows) and sum(
        row["parameters"] for row in node.rows
    ) != sum(row.get("parameters", 0) for row in group.rows):
        return node
    group.label = f"{node.label}.{group.label}" if node.path != ROOT_NAME else group.label
    group.order = node.order
    return group


def walk(roots: Sequence[Node], depth: int | None = None) -> Iterator[tuple[Node, int]]:
    """The nodes in tree order with their level (top level 0), down to level ``depth``."""
    stack = [(node, 0) for node in reversed(roots)]
    while stack:
        node, level = stack.pop()
        yield node, level
        if depth is None or level < depth:
            stack.extend((child, level + 1) for child in reversed(node.children))


def count_rows(roots: Sequence[Node], depth: int | None = None) -> int:
    """How many nodes :func:`walk` yields down to ``depth``."""
    return sum(1 for _ in walk(roots, depth))


def max_level(roots: Sequence[Node]) -> int:
    """The deepest level of the tree (0 for a flat list)."""
    return max((level for _, level in walk(roots)), default=0)


def auto_depth(roots: Sequence[Node], max_rows: int) -> int:
    """The deepest level whose table keeps within ``max_rows`` rows (at least level 1)."""
    deepest = max_level(roots)
    for depth in range(deepest, 0, -1):
        if count_rows(roots, depth) <= max_rows:
            return depth
    return min(1, deepest)
