"""The paging cursor: the opaque ``_cursor`` and ``_before`` values the server writes into ``next``
and ``previous`` links (keyset positions: one value per sort key, of that key's type, then the
primary key), and the checks that a value given back is one this server wrote.  Used by
:mod:`fhirstudy.search.query`.
"""
from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

import orjson

from fhirstudy.errors import InvalidRequest
from fhirstudy.limits import MAX_INTEGER, MAX_SORT_KEYS
from fhirstudy.search.index import TOKEN_LENGTH
from fhirstudy.search.values import FORBIDDEN_TEXT

if TYPE_CHECKING:
    from fhirstudy.search.query import SortKey

# A cursor holds at most MAX_SORT_KEYS index values of at most TOKEN_LENGTH characters and a key.
MAX_CURSOR_LENGTH = 16 * 1024
_NOT_OURS = "{name} is not a value this server wrote"


def encode_cursor(values: tuple) -> str:
    """The opaque ``_cursor`` value for a page that starts after ``values`` (sort values, primary key)."""
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode("ascii").rstrip("=")


def decode_cursor(raw: str, name: str = "_cursor") -> tuple:
    """The sort values and primary key a ``_cursor`` (or ``_before``) value holds; InvalidRequest when it
    is not ours: not base64 JSON, or not a list of at most MAX_SORT_KEYS index values (strings of at
    most TOKEN_LENGTH characters without control characters, numbers, nulls) followed by a primary
    key (an integer from 0 to 2^63 - 1).  Whether the values fit the search's sort keys is checked
    once the whole search is read (:func:`parse_search`)."""
    try:
        values = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidRequest(_NOT_OURS.format(name=name), expression=name) from exc
    if not (isinstance(values, list) and 1 <= len(values) <= MAX_SORT_KEYS + 1
            and all(_index_value(v) for v in values[:-1]) and _primary_key(values[-1])):
        raise InvalidRequest(_NOT_OURS.format(name=name), expression=name)
    return tuple(values)


def _index_value(value) -> bool:
    if isinstance(value, str):
        return len(value) <= TOKEN_LENGTH and not FORBIDDEN_TEXT.search(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return -MAX_INTEGER <= value <= MAX_INTEGER
    return value is None or isinstance(value, float)  # orjson reads no NaN or infinity


def _primary_key(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INTEGER


def check_position(values: tuple, sort: list[SortKey], name: str) -> None:
    """InvalidRequest unless ``values`` holds one value of each sort key's type (a number for a
    number parameter, a string otherwise; null for a resource without one) and the primary key."""
    if len(values) != len(sort) + 1:
        raise InvalidRequest(_NOT_OURS.format(name=name) + " (it does not belong to this search)",
                             expression=name)
    for key, value in zip(sort, values):
        wanted = (int, float) if key.param.type == "number" else str
        if value is not None and (not isinstance(value, wanted) or isinstance(value, bool)):
            raise InvalidRequest(_NOT_OURS.format(name=name) + " (it does not belong to this search)",
                                 expression=name)
