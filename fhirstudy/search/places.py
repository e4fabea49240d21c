"""Places to positions: a US ZIP code (or a city) to its latitude and longitude, for trials near a
patient (``$match``'s ``zipCode`` with ``travelRadius``, then ``near`` on the study's sites; the
search page's "near a ZIP code or city").

The ZIP table is the one the ``zipcodes`` package (PyPI, MIT licence) embeds in its wheel: about
42,000 US ZIP codes, each with the position of its centre, read without a network or a file of
its own.  Its errors are translated here, at the one place it is called: a malformed or unknown
ZIP code is :class:`fhirstudy.errors.UnknownPlace` (400) saying which.
"""
from __future__ import annotations

import re
from functools import lru_cache

import zipcodes

from fhirstudy.errors import UnknownPlace

_ZIP_RE = re.compile(r"(?P<zip>[0-9]{5})(?:-[0-9]{4})?")


def zip_position(zip_code: str, expression: str | None = None) -> tuple[float, float]:
    """``(latitude, longitude)`` in WGS84 degrees of the centre of US ZIP code ``zip_code``
    (``02114`` or ZIP+4 ``02114-2696``); :class:`UnknownPlace` naming ``expression`` (where the
    code came from, e.g. ``zipCode``) for a code that is not one or that no table row holds."""
    text = zip_code.strip() if isinstance(zip_code, str) else ""
    match = _ZIP_RE.fullmatch(text)
    if match is None:
        raise UnknownPlace(f"{zip_code!r} is not a US ZIP code (five digits, or ZIP+4 as 12345-6789)",
                           str(zip_code), expression)
    try:
        rows = zipcodes.matching(match.group("zip"))
    except (TypeError, ValueError) as exc:  # pragma: no cover - the pattern above is stricter
        raise UnknownPlace(f"{zip_code!r} is not a US ZIP code: {exc}", text, expression) from exc
    for row in rows:
        try:
            return float(row["lat"]), float(row["long"])
        except (KeyError, TypeError, ValueError):
            continue
    raise UnknownPlace(f"ZIP code {match.group('zip')} is not in the US ZIP code table (zipcodes "
                       f"{zipcodes.__version__}): no position is known for it", text, expression)


_CITY_RE = re.compile(r"(?P<city>[^,]+?)\s*(?:,\s*(?P<state>[A-Za-z]{2}))?\s*")


@lru_cache(maxsize=1)
def _cities() -> dict[str, list[dict]]:
    """The ZIP table's rows with a position, by city name (case folded)."""
    out: dict[str, list[dict]] = {}
    for row in zipcodes.list_all():
        if row.get("city") and row.get("lat") and row.get("long") and row.get("state"):
            out.setdefault(" ".join(row["city"].split()).casefold(), []).append(row)
    return out


def city_position(text: str, expression: str | None = None) -> tuple[float, float]:
    """``(latitude, longitude)`` of a US city, ``"Boston, MA"`` (or ``"Boston"`` when one state
    alone has a city of that name): the mean of the centres of its ZIP codes in the same table as
    :func:`zip_position`. :class:`UnknownPlace` when no city of that name is known, or when the
    name is in several states and none was given (the message names them)."""
    match = _CITY_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or not match.group("city").strip():
        raise UnknownPlace(f"{text!r} is not a city (write it as Boston, MA)", str(text), expression)
    city, state = match.group("city").strip(), (match.group("state") or "").upper()
    rows = [r for r in _cities().get(" ".join(city.split()).casefold(), ()) if not state or r["state"] == state]
    if not rows:
        where = f" in {state}" if state else ""
        raise UnknownPlace(f"No US city named {city!r}{where} is in the ZIP code table (zipcodes "
                           f"{zipcodes.__version__}); give a ZIP code or write it as Boston, MA", text, expression)
    states = sorted({r["state"] for r in rows})
    if len(states) > 1:
        raise UnknownPlace(f"{city!r} is a city in {len(states)} states ({', '.join(states[:12])}); "
                           f"add the state, as in {city}, {states[0]}", text, expression)
    return (sum(float(r["lat"]) for r in rows) / len(rows), sum(float(r["long"]) for r in rows) / len(rows))


def place_position(text: str, expression: str | None = None) -> tuple[float, float]:
    """The position of a US ZIP code (:func:`zip_position`) or city (:func:`city_position`),
    told apart by the leading digit."""
    stripped = text.strip() if isinstance(text, str) else ""
    if stripped[:1].isdigit():
        return zip_position(stripped, expression)
    return city_position(stripped, expression)
