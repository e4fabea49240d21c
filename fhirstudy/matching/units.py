"""Unit conversions for matching a patient's values with eligibility thresholds.

Generic factors are the UCUM ones of ``search-units.json`` (``/mm3`` -> ``10*9/L``, ``g/dL`` ->
``g/L``); conversions that depend on what is measured (mass <-> substance, HbA1c NGSP % <-> IFCC
mmol/mol) are ``match-patient.json`` ``conversions``, each ``to = factor x (from - shift)``. A pair
with no known conversion (``mL/min`` and ``mL/min/{1.73_m2}``) gives None, never a guess.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

from fhirstudy.matching.patient import Value
from fhirstudy.terminology import load_mapping


@lru_cache(maxsize=1)
def _generic() -> dict[str, tuple[str, Fraction]]:
    units = load_mapping("search-units.json")["units"]
    return {code: (u["canonical"], Fraction(u["factor"])) for code, u in units.items()}


@lru_cache(maxsize=1)
def _specific() -> dict[str, list[tuple[str, str, Fraction, Fraction]]]:
    rules: dict[str, list[tuple[str, str, Fraction, Fraction]]] = {}
    for rule in load_mapping("match-patient.json")["conversions"]:
        rules.setdefault(rule["analyte"], []).append(
            (rule["from"], rule["to"], Fraction(rule["factor"]), Fraction(rule["shift"])))
    return rules


def _rescale(value: Fraction, unit: str, to: str) -> Fraction | None:
    """``value`` in ``unit`` expressed in ``to`` by the generic UCUM factors, or None."""
    if unit == to:
        return value
    here, there = _generic().get(unit), _generic().get(to)
    if here is None or there is None or here[0] != there[0]:
        return None
    return value * here[1] / there[1]


def convert(analyte: str, value: float, unit: str, to: str) -> float | None:
    """``value`` (in UCUM ``unit``) of ``analyte`` in the unit ``to``, or None when no conversion
    is known."""
    exact = Fraction(str(value))
    direct = _rescale(exact, unit, to)
    if direct is not None:
        return float(direct)
    for source, target, factor, shift in _specific().get(analyte, ()):
        forward = _rescale(exact, unit, source)
        if forward is not None and _rescale(Fraction(1), target, to) is not None:
            return float(_rescale(factor * (forward - shift), target, to))
        backward = _rescale(exact, unit, target)
        if backward is not None and _rescale(Fraction(1), source, to) is not None:
            return float(_rescale(backward / factor + shift, source, to))
    return None


def uln_multiple(value: Value) -> float | None:
    """The value as a multiple of its upper limit of normal (for 'x ULN' criteria), or None when
    the value has no number or no upper limit in its unit."""
    if value.quantity is None or not value.uln:
        return None
    return value.quantity / value.uln
