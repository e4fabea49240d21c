"""What the store never sends to the database, checked at its API: a NUL character (PostgreSQL
text cannot hold one), an integer past 64 bits (the driver would raise OverflowError), a key
longer than its column (PostgreSQL refuses it; a b-tree refuses rows past ~2.7 kB).

The server and the query parser refuse these first (:func:`fhirstudy.limits.parse_integer`); this
is the defence behind them: a bad value is :class:`StoreValueRejected` (400) naming where it is,
never a 503 or a driver's traceback.  Index values longer than their column are cut to it (and a
searched value is cut the same way, so an equal long value still matches).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import sqlalchemy as sa

from fhirstudy.errors import StoreValueRejected
from fhirstudy.limits import MAX_INTEGER

NUL = "\x00"
ID_LENGTH = 64  # FHIR ids: at most 64 characters (and the ``resource.id`` column)


def check_integer(value: Any, where: str) -> int:
    """``value`` when it is an int from 0 to 2^63-1, else :class:`StoreValueRejected`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INTEGER:
        raise StoreValueRejected(f"{where} must be a whole number from 0 to 2^63-1, not {value!r}",
                                 expression=where)
    return value


def check_text(value: Any, where: str) -> None:
    """:class:`StoreValueRejected` when ``value`` is a string holding a NUL character."""
    if isinstance(value, str) and NUL in value:
        raise StoreValueRejected(f"{where} contains a NUL character (U+0000), which FHIR strings "
                                 f"cannot hold", expression=where)


def check_key(rtype: Any, rid: Any, where: str = "id") -> None:
    """A resource type and id the store can hold and look up (no NUL, id at most 64 characters)."""
    check_text(rtype, "resourceType")
    check_text(rid, where)
    if isinstance(rid, str) and len(rid) > ID_LENGTH:
        raise StoreValueRejected(f"{where} is {len(rid)} characters long; FHIR ids have at most "
                                 f"{ID_LENGTH}", expression=where)


def check_values(values: Iterable[Any], where: str) -> None:
    """No NUL in any string of ``values`` (search values: dataclasses, tuples, strings) and no
    integer past 64 bits among them."""
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            check_text(value, where)
        elif isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INTEGER:
                raise StoreValueRejected(f"{where}: {value} is past 64 bits", expression=where)
        elif isinstance(value, (tuple, list)):
            stack.extend(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            stack.extend(getattr(value, f.name) for f in dataclasses.fields(value)
                         if f.name != "param")


def bounded_columns(table: sa.Table) -> list[tuple[str, int]]:
    """The string columns of ``table`` with a length, and that length."""
    return [(c.name, c.type.length) for c in table.columns
            if isinstance(c.type, sa.String) and c.type.length]


def fit_rows(rows: list[dict], bounded: list[tuple[str, int]], text_columns: list[str], where: str) -> None:
    """Cut the values of ``bounded`` columns to their length, in place, and refuse a NUL in any
    text column (``where`` names the resource)."""
    for row in rows:
        for name in text_columns:
            value = row.get(name)
            if value is not None and NUL in value:
                raise StoreValueRejected(f"{where}: a value of search parameter {row.get('param', '?')} "
                                         f"contains a NUL character (U+0000), which FHIR strings cannot hold",
                                         expression=where)
        for name, length in bounded:
            value = row.get(name)
            if value is not None and len(value) > length:
                row[name] = value[:length]


def text_columns(table: sa.Table) -> list[str]:
    """The names of ``table``'s string columns."""
    return [c.name for c in table.columns if isinstance(c.type, (sa.String, sa.Text))]
