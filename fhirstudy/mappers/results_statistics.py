"""The pieces of an R5 ``Evidence.statistic`` made from ClinicalTrials.gov result values: numbers
read from the registry's text, Quantities with their unit, the statistic type of a measure's
parameter, and the attribute estimates of a dispersion, a p-value and a confidence interval.

Codes only from ``mappings/ctgov-to-fhir.json`` (statisticType, analysisStatisticType,
attributeEstimateType, statisticModel: codes of the official CodeSystems), UCUM only from
``mappings/results-units.json``; anything else is text. A value that is not a number ("NA") gives
no Quantity: the text is kept beside it.
"""
from __future__ import annotations

import re
from functools import lru_cache

from .. import terminology
from ..terminology import fold, load_mapping
from .common import compact, concept

UNITS_FILE = "results-units.json"
_NUMBER = re.compile(r"^\s*(<=|>=|<|>|≤|≥)?\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")
_COMPARATORS = {"≤": "<=", "≥": ">="}
_CONFIDENCE = re.compile(r"^CONFIDENCE_(\d+)$")
_CONFIDENCE_TEXT = re.compile(r"^(\d+(?:\.\d+)?)\s*%\s*Confidence Interval$", re.IGNORECASE)
MEAN_PARAMS = ("MEAN", "LEAST_SQUARES_MEAN")  # a "Standard Error" of these is the standard error of the mean
DIFFERENCES = ("Mean Difference (Final Values)", "Mean Difference (Net)", "Median Difference (Final Values)",
               "Median Difference (Net)")  # estimates in the measure's own unit


def number(text: str | None) -> tuple[int | float | None, str | None]:
    """The number a result text states and its comparator: ``"12"`` -> (12, None), ``"<0.0001"``
    -> (0.0001, "<"), ``"NA"`` -> (None, None)."""
    if not text:
        return None, None
    if text.isdecimal():  # digits alone (what \d matches: Unicode category Nd), the common case
        return int(text), None
    match = _NUMBER.match(text)
    if not match:
        return None, None
    raw = match.group(2)
    value: int | float = float(raw) if "." in raw or "e" in raw or "E" in raw else int(raw)
    comparator = match.group(1)
    return value, _COMPARATORS.get(comparator, comparator)


def unit_coding(unit: str | None) -> dict:
    """``system`` and ``code`` of a UCUM unit the text names (``results-units.json``), else {}."""
    if not unit:
        return {}
    system, folded = _units()
    code = folded.get(fold(unit))
    return {"system": system, "code": code} if code else {}


@lru_cache(maxsize=1)
def _units() -> tuple[str, dict[str, str]]:
    """The UCUM system and ``results-units.json``'s units by their folded text (built once)."""
    table = load_mapping(UNITS_FILE)
    return table["system"], {fold(k): v for k, v in table["units"].items()}


def quantity(text: str | None, unit: str | None = None) -> dict | None:
    """A Quantity of a result text, with the unit's text and its UCUM code when it has one; None
    when the text is not a number."""
    value, comparator = number(text)
    if value is None:
        return None
    return compact({"value": value, "comparator": comparator, "unit": unit, **unit_coding(unit)})


def count(value: int | None) -> int | None:
    """A count the registry gave, as an unsignedInt (None for a negative or missing one)."""
    return value if isinstance(value, int) and value >= 0 else None


def whole(text: str | None) -> int | None:
    """A whole non-negative number written as text ("15"), else None."""
    value, comparator = number(text)
    return value if isinstance(value, int) and value >= 0 and comparator is None else None


@lru_cache(maxsize=4096)
def label(section: str, name: str | None) -> str | None:
    """The registry's display text of an API v2 name (``MEAN`` -> "Mean"), from the legacy table,
    else the name as written."""
    if not name:
        return None
    table = load_mapping("ctgov-legacy-values.json").get(section, {})
    return next((display for display, value in table.items() if value == name), name)


def statistic_type(param_type: str | None) -> dict | None:
    """``statisticType`` of a measure's parameter: the official code where one is equivalent,
    always the registry's words."""
    return concept(terminology.coding("statisticType", param_type), label("measureParam", param_type))


def analysis_statistic_type(param_type: str | None) -> dict | None:
    """``statisticType`` of an analysis's estimation parameter (compared case-insensitively)."""
    if not param_type:
        return None
    key = _keys_by_folded("analysisStatisticType").get(fold(param_type))
    return concept(terminology.coding("analysisStatisticType", key), param_type)


def model_characteristic(method: str | None) -> dict | None:
    """``modelCharacteristic`` of an analysis's statistical method (the official code when the
    method is exactly one the CodeSystem names)."""
    if not method:
        return None
    key = _keys_by_folded("statisticModel").get(fold(method))
    return {"code": concept(terminology.coding("statisticModel", key), method)}


@lru_cache(maxsize=None)
def _keys_by_folded(section: str) -> dict[str, str]:
    """The keys of a ``ctgov-to-fhir.json`` section's codes by their folded text (the first of
    keys that fold alike, as a scan in file order would find)."""
    out: dict[str, str] = {}
    for key in load_mapping("ctgov-to-fhir.json")[section]["codes"]:
        out.setdefault(fold(key), key)
    return out


def _estimate_type(key: str, text: str) -> dict | None:
    return concept(terminology.coding("attributeEstimateType", key), text)


def dispersion(kind: str | None, param_type: str | None, spread: str | None, low: str | None, high: str | None,
               unit: str | None, section: str = "dispersionType") -> list[dict]:
    """The attribute estimates of a measurement's dispersion: a standard deviation or error with
    its value, a range, an interquartile range or a confidence interval (with its level) with its
    limits; none for ``NA`` or when no number is given."""
    if not kind or kind == "NA":
        return []
    text, level, key = _dispersion_kind(kind, param_type, section)
    spread_q, low_q, high_q = quantity(spread, unit), quantity(low, unit), quantity(high, unit)
    estimate = compact({
        "type": _estimate_type(key, text) if key else concept(text=text),
        "quantity": spread_q,
        "level": level,
        "range": compact({"low": low_q, "high": high_q}) or None,
        "note": [{"text": f"{name}: {value}"} for name, value, found in (
            ("Spread", spread, spread_q), ("Lower limit", low, low_q), ("Upper limit", high, high_q))
            if value and found is None],  # a text that is no number
    })
    return [estimate] if len(estimate) > 1 else []


@lru_cache(maxsize=1024)
def _dispersion_kind(kind: str, param_type: str | None, section: str) -> tuple[str | None, float | None, str | None]:
    """A dispersion type's display text, confidence level and attributeEstimateType key (the
    same for every measurement of a measure)."""
    text = label(section, kind)
    level = None
    match = _CONFIDENCE.match(kind) or _CONFIDENCE_TEXT.match(kind)
    if match:
        digits = match.group(1)
        level = int(digits) / (10 ** (len(digits) - 2)) / 100 if _CONFIDENCE.match(kind) else float(digits) / 100
        key = "CONFIDENCE_INTERVAL"
    elif kind == "STANDARD_ERROR":
        key = "STANDARD_ERROR_OF_MEAN" if param_type in MEAN_PARAMS else None
    elif kind == "CONFIDENCE_OTHER":
        key = "CONFIDENCE_INTERVAL"
    else:
        key = kind
    return text, level, key


def p_value(text: str | None, comment: str | None) -> dict | None:
    """The attribute estimate of an analysis's p-value (``"<0.0001"``: a Quantity with comparator)."""
    if not text:
        return None
    value = quantity(text)
    return compact({"type": _estimate_type("P_VALUE", "P-value"), "quantity": value,
                    "description": None if value else text,
                    "note": [{"text": comment}] if comment else []})


def confidence_interval(analysis, unit: str | None) -> dict | None:
    """The attribute estimate of an analysis's confidence interval: level, limits, sides."""
    low, high = quantity(analysis.ci_lower_limit, unit), quantity(analysis.ci_upper_limit, unit)
    pct = number(analysis.ci_pct_value)[0]
    if low is None and high is None and pct is None:
        return None
    sides = {"ONE_SIDED": "1-sided", "TWO_SIDED": "2-sided"}.get(analysis.ci_num_sides or "", analysis.ci_num_sides)
    notes = [f"Confidence interval: {sides}" if sides else None,
             f"Lower limit: {analysis.ci_lower_limit_comment}" if analysis.ci_lower_limit_comment else None,
             f"Upper limit: {analysis.ci_upper_limit_comment}" if analysis.ci_upper_limit_comment else None]
    return compact({"type": _estimate_type("CONFIDENCE_INTERVAL", "Confidence interval"),
                    "level": pct / 100 if pct is not None else None,
                    "range": compact({"low": low, "high": high}) or None,
                    "note": [{"text": n} for n in notes if n]})
