"""Places to positions: a US ZIP code to its latitude and longitude, for trials near a patient
(``$match``'s ``zipCode`` with ``travelRadius``, then ``near`` on the study's sites).

The ZIP table is the one the ``zipcodes`` package (PyPI, MIT licence) embeds in its wheel: about
42,000 US ZIP codes, each with the position of its centre, read without a network or a file of
its own.  Its errors are translated here, at the one place it is called: a malformed or unknown
ZIP code is :class:`fhirstudy.errors.UnknownPlace` (400) saying which.
"""
from __future__ import annotations

import re

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
