"""Evaluation steps of the FHIRPath subset: navigation (choice elements found under their typed
JSON names), union, type tests, ``resolve()`` and equality, each on lists of :class:`Item`."""
from __future__ import annotations

import json
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator

from fhirstudy.search.fhirpath.elements import ANY_RESOURCE, child_path_and_type, choice_types, may_be_choice
from fhirstudy.search.fhirpath.nodes import Item, Resolved


def first_step_items(ctx: list[Item], root: Item, name: str) -> list[Item]:
    if len(ctx) == 1 and ctx[0] is root and (name == root.type or name in ANY_RESOURCE):
        return [root]
    return children(ctx, name)


def children(ctx: list[Item], name: str) -> list[Item]:
    out: list[Item] = []
    for parent in ctx:
        if not isinstance(parent.value, dict):
            continue
        if name in parent.value:
            path, type_name = child_path_and_type(parent, name)
            out.extend(_items(parent.value[name], type_name, path))
            continue
        if not may_be_choice(parent.path or parent.type, name):
            continue
        # a choice element: find its typed JSON name, e.g. value -> valueCodeableConcept
        for key, value in parent.value.items():
            suffix = key[len(name):]
            if key.startswith(name) and suffix in choice_types():
                type_name = choice_types()[suffix]
                out.extend(_items(value, type_name, type_name if type_name[:1].isupper() else None))
    return out


def _items(value: Any, type_name: str | None, path: str | None) -> list[Item]:
    values = value if isinstance(value, list) else [value]
    return [Item(v, type_name, path) for v in values if v is not None]


def distinct(items) -> list[Item]:
    seen, out = set(), []
    for item in items:
        key = json.dumps(item.value, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _type_of(item: Item) -> str | None:
    if item.type is not None:
        return item.type
    if isinstance(item.value, bool):
        return "boolean"
    if isinstance(item.value, str):
        return "string"
    return None


def _same_type(actual: str | None, wanted: str) -> bool:
    return actual is not None and actual.lower() == wanted.lower()


def of_type(ctx: list[Item], type_name: str) -> list[Item]:
    return [item for item in ctx if _type_of(item) is None or _same_type(_type_of(item), type_name)]


def is_type(ctx: list[Item], type_name: str) -> list[Item]:
    if len(ctx) != 1:
        return []
    actual = _type_of(ctx[0])
    return [Item(actual is None or _same_type(actual, type_name), "boolean")]


# What ``resolve()`` reads a reference with (see :func:`resolving`); unset, only the type is known.
_RESOLVER: ContextVar[Callable[[str], dict | None] | None] = ContextVar("fhirpath_resolver", default=None)


@contextmanager
def resolving(lookup: Callable[[str], dict | None]) -> Iterator[None]:
    """Within the block, ``resolve()`` gives the resource ``lookup(reference)`` returns (a FHIR
    JSON dict, or None when it cannot be had), so that an expression can walk into it."""
    token = _RESOLVER.set(lookup)
    try:
        yield
    finally:
        _RESOLVER.reset(token)


def resolve(item: Item) -> Item:
    reference = item.value.get("reference") if isinstance(item.value, dict) else item.value
    target = None
    if isinstance(reference, str) and not reference.startswith("#"):
        parts = reference.split("/_history/")[0].split("/")
        if len(parts) >= 2 and parts[-2][:1].isupper():
            target = parts[-2]
    lookup = _RESOLVER.get()
    found = lookup(reference) if lookup is not None and target else None
    if isinstance(found, dict) and found.get("resourceType") == target:
        return Item(found, target, target)
    return Item(Resolved(target), target)


def exists(ctx: list[Item], negate: bool) -> list[Item]:
    """``exists()`` (``empty()`` with ``negate``)."""
    return [Item(bool(ctx) != negate, "boolean")]


def equals(left: list[Item], right: list[Item], negate: bool) -> list[Item]:
    if len(left) != 1 or len(right) != 1:
        return []
    equal = left[0].value == right[0].value
    return [Item(equal != negate, "boolean")]


def is_true(items: list[Item]) -> bool:
    return len(items) == 1 and items[0].value is True
