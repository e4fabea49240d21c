"""Every ``reference`` string in a FHIR JSON tree (tests of the R4 down-conversion use it)."""
from __future__ import annotations

from collections.abc import Iterator


def references(node) -> Iterator[str]:
    """The ``reference`` values anywhere under ``node`` (dicts and lists), in document order."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                yield v
            else:
                yield from references(v)
    elif isinstance(node, list):
        for v in node:
            yield from references(v)
