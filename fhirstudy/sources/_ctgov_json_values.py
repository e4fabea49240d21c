"""Typed reads of one API v2 JSON study (for :mod:`.ctgov_json`): a value of the wrong JSON type
is an error naming the source path and the Trial field, and reads as absent, so nothing downstream
sees it."""
from __future__ import annotations

from typing import Any

from ..errors import Problem
from . import _ctgov
from ._fields import Fields

SNIPPET = 60  # characters of a bad value quoted in a problem


def error(reason: str, field: str | None) -> Problem:
    return Problem(reason, field=field, severity="error")


def warning(reason: str, field: str | None) -> Problem:
    return Problem(reason, field=field, severity="warning")


def take(node: Fields, key: str) -> Any:
    """The value at a single ``key`` of a node, marked used (``Fields.get`` without a node object per
    leaf: the reader's hot path)."""
    value = node.value.get(key) if isinstance(node.value, dict) else None
    if value is not None and node.accounting:
        node.mark(key)
    return value


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "text", list: "an array", dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SNIPPET else text[:SNIPPET - 1] + "…"


class StudyValues:
    """One study being converted: the read-tracking view of it and the problems found so far."""

    def __init__(self, study: dict, accounting: bool = True):
        self.root = Fields(study, accounting=accounting)
        self.problems: list[Problem] = []

    # Typed reads: a value of the wrong JSON type is an error naming the source path and the Trial
    # field, and reads as absent, so nothing downstream sees it.

    def _wrong(self, node: Fields, key: str, value: Any, expected: str, field: str) -> None:
        path = node.node(key).path
        self.problems.append(error(f"{path}: {quote(value)} is {json_type(value)}, expected {expected}", field))

    def _string(self, node: Fields, key: str, field: str) -> str | None:
        """The string at ``key``; None (and a problem when it is something else) otherwise."""
        value = take(node, key)
        if value is None or isinstance(value, str):
            return value
        self._wrong(node, key, value, "text", field)
        return None

    def text(self, node: Fields, key: str, field: str) -> str | None:
        value = self._string(node, key, field)
        return None if value is None else _ctgov.text(value)

    def code(self, node: Fields, key: str, field: str) -> str | None:
        """An enumerated value, as given (the Trial schema checks the values it knows)."""
        value = self._string(node, key, field)
        return None if value is None else (value.strip() or None)

    def flag(self, node: Fields, key: str, field: str) -> bool | None:
        value = take(node, key)
        if value is None or isinstance(value, bool):
            return value
        self._wrong(node, key, value, "true or false", field)
        return None

    def integer(self, node: Fields, key: str, field: str) -> int | None:
        value = take(node, key)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self._wrong(node, key, value, "a whole number", field)
            return None
        return value

    def number(self, node: Fields, key: str, field: str) -> float | None:
        value = take(node, key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self._wrong(node, key, value, "a number", field)
            return None
        return float(value)

    def texts(self, node: Fields, key: str, field: str, *, codes: bool = False) -> list[str]:
        """A list of text (or of enumerated values), empty entries dropped."""
        value = take(node, key)
        if value is None:
            return []
        if not isinstance(value, list):
            self._wrong(node, key, value, "an array of text", field)
            return []
        out = []
        for item in value:
            if not isinstance(item, str):
                self._wrong(node, key, item, "text", field)
                continue
            item = item.strip() if codes else _ctgov.text(item)
            if item:
                out.append(item)
        return out

    def items(self, node: Fields, key: str, field: str) -> list[Fields]:
        """The objects of the array at ``key`` (an entry of another type is an error)."""
        value = node.node(key).value
        if value is None:
            return []
        if not isinstance(value, list):
            self._wrong(node, key, value, "an array", field)
            node.mark(key)
            return []
        out = []
        for item in node.nodes(key):
            if isinstance(item.value, dict):
                out.append(item)
            elif item.value is not None:
                self._wrong(node, key, item.value, "an object", field)
                node.mark(key)
        return out

    def obj(self, node: Fields, key: str, field: str | None = None) -> Fields:
        """The object at ``key`` (a module, a struct), to read from; another type is an error and
        reads as absent."""
        child = node.node(key)
        if child.value is not None and not isinstance(child.value, dict):
            self._wrong(node, key, child.value, "an object", field)
            node.mark(key)
            return Fields(None, child.path, set())
        return child

    def date(self, node: Fields, key: str, field: str) -> dict | None:
        """A (Partial)DateStruct: ``{"date", "type"}``; the type may be absent."""
        struct = self.obj(node, key, field)
        date = self.code(struct, "date", field)
        if date is None:
            return None
        return {"date": date, "type": self.code(struct, "type", field)}

    # The study, module by module.
