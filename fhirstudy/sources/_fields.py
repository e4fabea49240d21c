"""Field accounting for registry records: which source fields a reader carried into the Trial.

A reader wraps a parsed record in ``Fields`` and reads through it; every value it takes is marked
used. ``unmapped()`` then lists the leaf paths the record holds that were neither used nor on the
documented ignore list (``mappings/ctgov-ignored-fields.json``), so ``fhirstudy convert --report``
can say which source fields did not reach FHIR. Paths join keys with dots and drop list indexes:
``protocolSection.armsInterventionsModule.armGroups.label``.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..terminology import load_mapping

class Fields:
    """A read-tracking view of one record (a tree of dicts and lists), or of a part of it.

    ``accounting=False`` (per record: the report is the only consumer, and it costs) makes
    ``unmapped()`` empty without walking the record."""

    __slots__ = ("value", "path", "_used", "accounting")

    def __init__(self, value: Any, path: str = "", used: set[str] | None = None, accounting: bool = True):
        self.value = value
        self.path = path
        self._used = used if used is not None else set()
        self.accounting = accounting

    def _child_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: Any = None) -> Any:
        """The value at a dotted ``key`` below this node (or ``default``), marked used with
        everything beneath it."""
        node = self.node(key)
        if node.value is None:
            return default
        if self.accounting:
            self._used.add(node.path)
        return node.value

    def node(self, key: str) -> Fields:
        """The node at a dotted ``key`` (a dict, a list or a value), not marked used."""
        value, path = self.value, self.path
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
            path = f"{path}.{part}" if path else part
        return Fields(value, path, self._used, self.accounting)

    def at(self, key: str) -> Any:
        """The value at a dotted ``key`` (``node(key).value``, without building the node), not
        marked used."""
        value = self.value
        for part in key.split("."):
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value

    def nodes(self, key: str) -> list[Fields]:
        """The items of the list at ``key`` (empty when absent), each a node to read from."""
        node = self.node(key)
        if not isinstance(node.value, list):
            return []
        return [Fields(item, node.path, self._used, self.accounting) for item in node.value]

    def mark(self, *keys: str) -> None:
        """Mark fields used without reading them (consumed by another field's logic); nothing to
        mark without accounting."""
        if self.accounting:
            for key in keys:
                self._used.add(self._child_path(key))

    def unmapped(self, ignored: Iterable[str] = ()) -> list[str]:
        """Leaf paths of the record neither used nor ignored (a path is covered by any used or
        ignored path that equals it or is one of its prefixes), sorted, without duplicates."""
        if not self.accounting:
            return []
        covered = self._used | set(ignored)
        if self.path and _covered(self.path, covered):
            return []
        return sorted(_uncovered([self.value], self.path, covered))


def _covered(path: str, covered: set[str]) -> bool:
    while True:
        if path in covered:
            return True
        if "." not in path:
            return False
        path = path.rsplit(".", 1)[0]


def _uncovered(values: list, path: str, covered: set[str]) -> Iterator[str]:
    """Leaf paths below ``path`` not covered, walking each distinct path once: the values found at
    one path (in every item of every list) are walked together, and a covered path is not entered."""
    children: dict[str, list] = {}
    leaf = False
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                children.setdefault(key, []).append(child)
        elif isinstance(value, list):
            stack.extend(value)
        elif value is not None:
            leaf = True
    if leaf and path:
        yield path
    for key, group in children.items():
        child_path = f"{path}.{key}" if path else key
        if child_path not in covered:
            yield from _uncovered(group, child_path, covered)


def ignored_fields(format: str) -> frozenset[str]:
    """The documented ignore list of one registry format (paths only; the reasons are in the file)."""
    table = load_mapping("ctgov-ignored-fields.json")
    return frozenset(table.get(format, {}))
