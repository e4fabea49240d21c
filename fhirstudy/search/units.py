"""The unit a number search parameter compares a Quantity in (data: ``mappings/search-units.json``).

``eligible-age=67`` is in years and must meet "6 Months"; ``...751-8$1.5`` is in 10*9/L and must
meet "1,500/mm3". A UCUM Quantity whose code the table lists is compared as its value times the
table's exact factor; any other Quantity as written.
"""
from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

from fhirstudy import mappings

UCUM = "http://unitsofmeasure.org"
UNITS_FILE = "search-units.json"  # in fhirstudy.mappings


@lru_cache(maxsize=1)
def _factors() -> dict[str, Fraction]:
    return {code: Fraction(row["factor"]) for code, row in mappings.load(UNITS_FILE)["units"].items()}


def canonical(quantity: object) -> float | None:
    """The number a Quantity (dict) stands for in its canonical unit, None without a number."""
    if not isinstance(quantity, dict):
        return None
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or not math.isfinite(value):
        return None
    factor = _factors().get(quantity.get("code")) if quantity.get("system") == UCUM else None
    return float(Fraction(value) * factor) if factor is not None else float(value)
