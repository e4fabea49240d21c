"""Index rows of the special ``near`` parameters (:mod:`fhirstudy.search.index` calls these): a
position (``Location.position``) as degrees, unit vector and grid cell (:mod:`fhirstudy.search.geo`),
and a linked one (``ResearchStudy.site.resolve().position``, ``site-near``) with the id of the
resource each position was read from (``source``), so that a study's nearest site is one of its
own index rows.
"""
from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Iterable

from fhirstudy.search.fhirpath import Expression, Item, compile_expression, resolve, split_union
from fhirstudy.search.geo import PositionError, cell, position


def position_rows(item: Item) -> Iterable[dict]:
    """A ``position`` (latitude and longitude, decimal degrees) and its unit vector; nothing for
    one without both or out of range."""
    value = item.value
    if not isinstance(value, dict):
        return
    latitude, longitude = value.get("latitude"), value.get("longitude")
    if isinstance(latitude, Decimal):
        latitude = float(latitude)
    if isinstance(longitude, Decimal):
        longitude = float(longitude)
    try:
        point = position(latitude, longitude)
    except PositionError:
        return
    yield {"latitude": point.latitude, "longitude": point.longitude, "x": point.x, "y": point.y, "z": point.z,
           "cell": cell(point.latitude, point.longitude)}


@lru_cache(maxsize=64)
def linked_walk(text: str) -> tuple[Expression, str] | None:
    """A linked expression of one branch, ``X.ref.resolve().rest``: the expression of its
    references and ``rest`` (None for any other)."""
    prefix, found, rest = text.partition(".resolve().")
    if not found or len(split_union(text)) != 1 or "resolve()" in rest:
        return None
    return compile_expression(prefix), rest


@lru_cache(maxsize=64)
def _rest(rtype: str, rest: str) -> Expression:
    return compile_expression(f"{rtype}.{rest}")


def linked_positions(resource: dict, references: Expression, rest: str) -> Iterable[dict]:
    """The rows of a linked special parameter (``ResearchStudy.site.resolve().position``): the
    rows the expression gives, in its order and without repeats, each with the id of the resource
    its position was read from (``source``; the first such when two share a position)."""
    seen = set()
    for reference in references.evaluate(resource):
        target = resolve(reference)
        if not isinstance(target.value, dict):  # not resolved: nothing to walk into
            continue
        for item in _rest(target.type, rest).evaluate(target.value):
            for row in position_rows(item):
                key = (row["latitude"], row["longitude"])
                if key not in seen:
                    seen.add(key)
                    yield {**row, "source": target.value.get("id")}
