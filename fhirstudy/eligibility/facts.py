"""Facts as FHIR R5: the part of an ``EvidenceVariable.characteristic`` that states a criterion.

One fact::

    {"definitionByTypeAndValue": {"type": CodeableConcept,
                                  "valueQuantity" | "valueRange" | "valueCodeableConcept": ...},
     "note": [{"text": "or <= 5 x ULN with liver metastases"}]}          # only for a conditional threshold

Several facts (or facts beside parts that stay text)::

    {"definitionByCombination": {"code": "all-of", "characteristic": [
        {"description": part, "definitionByTypeAndValue": ...},
        {"description": part, "definitionCodeableConcept": {"text": part}}]}}

A multiple of the upper limit of normal is a ``valueQuantity`` with unit ``x ULN`` and the UCUM
annotation code ``{ULN}``; scores (ECOG, Karnofsky) and the INR are quantities without a unit.
"""
from __future__ import annotations

from fhirstudy.eligibility.lexicon import lexicon
from fhirstudy.eligibility.reading import Fact, Part, read


def facts(text: str, *, exclude: bool = False) -> dict | None:
    """What ``text`` (one criterion, or one sub-bullet of it) states in FHIR terms, or None when
    it states nothing checkable without doubt (see the module docstring for the shape).

    Several facts are ``all-of``. Pass ``exclude=True`` for an exclusion criterion: there a list
    ("ALT > 3 x ULN, bilirubin > 2 x ULN") means any of its items (``any-of``), an explicit
    ``and`` still all of them, and a criterion mixing both is left as text."""
    parts = read(text or "", exclude)
    if not parts or not any(p.facts for p in parts):
        return None
    if len(parts) == 1 and len(parts[0].facts) == 1:
        return _characteristic(parts[0].facts[0])
    code = _combination_code(parts, exclude)
    if code is None:
        return None
    items = []
    for part in parts:
        if not part.facts:
            items.append({"description": part.text, "definitionCodeableConcept": {"text": part.text}})
        elif code == "any-of" and len(part.facts) > 1:   # "AST and ALT > 3 x ULN" in a list of exclusions
            items.append({"description": part.text, "definitionByCombination": {"code": "all-of", "characteristic": [
                {"description": part.text, **_characteristic(f)} for f in part.facts]}})
        else:
            items.extend({"description": part.text, **_characteristic(f)} for f in part.facts)
    return {"definitionByCombination": {"code": code, "characteristic": items}}


def _combination_code(parts: tuple[Part, ...], exclude: bool) -> str | None:
    if not exclude:
        return "all-of"
    joins = {p.joined_by for p in parts[1:]}
    if joins == {"list"}:
        return "any-of"
    return "all-of" if joins <= {"and"} else None


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _quantity(value: float, unit: str, comparator: str | None = None) -> dict:
    out: dict = {"value": _number(value)}
    if comparator and comparator != "=":
        out["comparator"] = comparator
    if unit:
        display = next(u for code, u in lexicon().units if code == unit)
        out.update({"unit": display, "system": lexicon().ucum, "code": unit})
    return out


def _coding(entry: dict) -> dict:
    return {"system": entry["system"], "code": entry["code"], "display": entry["display"]}


def _characteristic(fact: Fact) -> dict:
    lex = lexicon()
    analyte = lex.analytes[fact.analyte]
    definition: dict = {"type": {"coding": [_coding(analyte["coding"])], "text": analyte["coding"]["display"]}}
    if fact.interpretation is not None:
        entry = lex.interpretations[fact.interpretation]
        definition["valueCodeableConcept"] = {"coding": [_coding(entry)], "text": fact.interpretation}
    elif fact.low is not None:
        definition["valueRange"] = {"low": _quantity(fact.low, fact.unit), "high": _quantity(fact.high, fact.unit)}
    else:
        definition["valueQuantity"] = _quantity(fact.value, fact.unit, fact.comparator)
    out: dict = {"definitionByTypeAndValue": definition}
    if fact.note:
        out["note"] = [{"text": fact.note}]
    return out


def flat(result: dict | None) -> list[dict]:
    """The facts of a :func:`facts` result as plain rows (analyte key, comparator, value or
    low/high, unit, interpretation), the form of the hand-labelled table."""
    if not result:
        return []
    if "definitionByCombination" in result:
        return [row for c in result["definitionByCombination"]["characteristic"] for row in flat(c)]
    definition = result.get("definitionByTypeAndValue")
    if not definition:
        return []
    by_code = {a["coding"]["code"]: key for key, a in lexicon().analytes.items()}
    row: dict = {"analyte": by_code[definition["type"]["coding"][0]["code"]]}
    if "valueCodeableConcept" in definition:
        row["interpretation"] = definition["valueCodeableConcept"]["text"]
    elif "valueRange" in definition:
        r = definition["valueRange"]
        row.update(low=r["low"]["value"], high=r["high"]["value"], unit=r["high"].get("code", ""))
    else:
        q = definition["valueQuantity"]
        row.update(comparator=q.get("comparator", "="), value=q["value"], unit=q.get("code", ""))
    return [row]


__all__ = ["facts", "flat", "Part", "Fact"]
