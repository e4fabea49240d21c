"""Positions on the earth for the ``near`` search parameter (FHIR R5 ``Location-near``).

``near=[latitude]|[longitude]|[distance]|[units]`` (WGS84 degrees) finds Locations whose
``position`` lies within ``distance`` of the point along the great circle of a sphere of
:data:`EARTH_RADIUS_KM`.  Units are those of ``distanceUnits`` in ``mappings/search-units.json``
(``km``, ``m``, ``mi`` = ``[mi_i]``, ``[mi_us]``); without units the distance is in kilometres,
as the definition says; without a distance the server may choose what is near, and fhirstudy
takes :data:`DEFAULT_NEAR_KM`.

Each indexed position keeps its unit vector (``x``, ``y``, ``z``) beside latitude and longitude,
so that the exact test is plain arithmetic on both databases: the chord between two points on the
unit sphere is at most ``2 sin(angle / 2)`` (:func:`chord_limit`), well conditioned even for a
distance of a few metres.  :func:`bounding_box` gives the latitude and longitude ranges the
database can look up first by its index.
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

from fhirstudy import mappings

EARTH_RADIUS_KM = 6371.0088  # the mean radius of the earth (IUGG), in km
DEFAULT_NEAR_KM = 50.0  # what ``near`` means without a distance (the server's choice, per R5)
UNITS_FILE = "search-units.json"  # in fhirstudy.mappings: its ``distanceUnits`` table
DEFAULT_UNIT = "km"
_BOX_MARGIN = 1e-9  # degrees added around a bounding box, so rounding never drops a match there
CELL_COLUMNS = 361  # grid cells of one degree: floor(longitude + 180) in 0..360, per floor(latitude + 90)
MAX_CELLS = 1024  # a box over more cells is looked up by its latitude band alone (a radius of ~1,500 km)


class PositionError(ValueError):
    """A latitude, longitude, distance or unit that cannot be used (the message says which)."""


class Position(NamedTuple):
    """A point: WGS84 degrees, and its unit vector on the sphere (a tuple: the near page makes
    hundreds from index rows per request)."""

    latitude: float
    longitude: float
    x: float
    y: float
    z: float


@lru_cache(maxsize=1)
def distance_units() -> dict[str, Fraction]:
    """The distance units ``near`` takes, as exact factors to kilometres."""
    table = mappings.load(UNITS_FILE)["distanceUnits"]
    return {code: Fraction(factor) for code, factor in table.items() if not code.startswith("_")}


def position(latitude: float, longitude: float) -> Position:
    """The point at ``latitude``, ``longitude`` (degrees); PositionError when out of range."""
    for name, value, limit in (("latitude", latitude, 90), ("longitude", longitude, 180)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PositionError(f"the {name} must be a number, not {value!r}")
        if not -limit <= value <= limit:
            raise PositionError(f"the {name} must lie between -{limit} and {limit} degrees, not {value}")
    phi, lam = math.radians(latitude), math.radians(longitude)
    return Position(float(latitude), float(longitude),
                    math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi))


def cell(latitude: float, longitude: float) -> int:
    """The one-degree grid cell of a position (degrees in range): the index looks positions up by
    cell first, so that a search reads the rows of the cells its box covers rather than a band of
    latitude around the earth.  The stores compute the same from the columns
    (``fhirstudy.store.schema``): ``floor(latitude + 90) * 361 + floor(longitude + 180)``."""
    return math.floor(latitude + 90.0) * CELL_COLUMNS + math.floor(longitude + 180.0)


def cells(box: tuple[tuple[float, float], list[tuple[float, float]]]) -> list[int] | None:
    """The cells a :func:`bounding_box` covers (every cell a position inside it can have), or None
    when they are more than :data:`MAX_CELLS`."""
    (south, north), ranges = box
    rows = range(math.floor(south + 90.0), math.floor(north + 90.0) + 1)
    columns = [c for west, east in ranges for c in range(math.floor(west + 180.0), math.floor(east + 180.0) + 1)]
    if len(rows) * len(columns) > MAX_CELLS:
        return None
    return sorted({row * CELL_COLUMNS + column for row in rows for column in columns})


def to_km(distance: float, unit: str | None) -> float:
    """``distance`` in ``unit`` (None or empty: km) as kilometres; PositionError for a negative
    distance or a unit not in the table."""
    unit = unit or DEFAULT_UNIT
    factor = distance_units().get(unit)
    if factor is None:
        raise PositionError(f"the unit must be one of {', '.join(distance_units())}, not {unit!r}")
    if not math.isfinite(distance) or distance < 0:
        raise PositionError(f"the distance must be a number of at least 0, not {distance}")
    return float(Fraction(distance) * factor)


def chord_limit(km: float) -> float:
    """The squared chord (unit sphere) of a great-circle distance of ``km``: points at most
    ``km`` apart are those whose unit vectors differ by a squared length at most this."""
    angle = min(km / EARTH_RADIUS_KM, math.pi)
    return (2 * math.sin(angle / 2)) ** 2


def great_circle_km(a: Position, b: Position) -> float:
    """The great-circle distance between ``a`` and ``b`` in km."""
    return chord_km((a.x - b.x) ** 2 + (a.y - b.y) ** 2 + (a.z - b.z) ** 2)


def chord_km(squared: float) -> float:
    """The great-circle distance in km of a squared chord on the unit sphere (:func:`chord_limit`'s inverse)."""
    return 2 * math.asin(min(math.sqrt(squared) / 2, 1.0)) * EARTH_RADIUS_KM


def bounding_box(center: Position, km: float) -> tuple[tuple[float, float], list[tuple[float, float]]]:
    """The latitude range and the longitude ranges (one, or two across the antimeridian) that hold
    every point within ``km`` of ``center``: a superset of the matches, for the index."""
    angle = km / EARTH_RADIUS_KM
    if angle >= math.pi:
        return (-90.0, 90.0), [(-180.0, 180.0)]
    spread = math.degrees(angle) + _BOX_MARGIN
    low, high = center.latitude - spread, center.latitude + spread
    if low <= -90 or high >= 90:  # the circle holds a pole: every longitude
        return (max(low, -90.0), min(high, 90.0)), [(-180.0, 180.0)]
    wide = math.degrees(math.asin(min(math.sin(angle) / math.cos(math.radians(center.latitude)), 1.0)))
    west, east = center.longitude - wide - _BOX_MARGIN, center.longitude + wide + _BOX_MARGIN
    if east - west >= 360:
        ranges = [(-180.0, 180.0)]
    elif west < -180:
        ranges = [(west + 360, 180.0), (-180.0, east)]
    elif east > 180:
        ranges = [(west, 180.0), (-180.0, east - 360)]
    else:
        ranges = [(west, east)]
    return (low, high), ranges
