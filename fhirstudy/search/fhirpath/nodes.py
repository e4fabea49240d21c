"""What a FHIRPath evaluation deals in: :class:`Item` (a JSON value and its FHIR type), the
evaluator signature, and :class:`UnsupportedExpression`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple


class UnsupportedExpression(ValueError):
    """The expression uses FHIRPath this subset does not implement."""


class Item(NamedTuple):
    """One node of an evaluation result: a JSON value and its FHIR type name (or None)."""

    value: Any
    type: str | None = None
    path: str | None = None  # element path used to look up child types, e.g. "ResearchStudy.period"


@dataclass(frozen=True)
class Resolved:
    """What ``resolve()`` gives for a reference: only the target type is known."""

    type: str | None


# a compiled expression is a closure  (context items, root item) -> items
Evaluator = Callable[[list[Item], Item], list[Item]]
