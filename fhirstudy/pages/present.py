"""What a page shows of FHIR JSON: labels of codes, a study's status, phase and sponsor, an
eligibility characteristic's computable fact in words, a site's place.

The code lists the search form offers come from the mappings the converter writes with
(``conditions.json`` condition groups, ``subtypes.json`` biomarkers, ``ctgov-to-fhir.json``
recruitment statuses and phases); the names of code systems shown beside codes are data in
``mappings/pages.json``. Everything here is a pure function of its input.
"""
from __future__ import annotations

from functools import lru_cache

from fhirstudy import terminology

STATUS_SYSTEM = "http://hl7.org/fhir/research-study-status"
SPONSOR_ROLES = ("lead-sponsor", "sponsor")


@lru_cache(maxsize=1)
def _labels() -> dict:
    return terminology.load_mapping("pages.json")


def _codes(section: str) -> list[tuple[str, str]]:
    table = terminology.load_mapping("ctgov-to-fhir.json")[section]["codes"]
    return list(dict.fromkeys((v["code"], v["display"]) for v in table.values()))


@lru_cache(maxsize=1)
def choices() -> dict[str, list[tuple[str, str]]]:
    """The (code, label) lists of the search form: condition groups, biomarkers, statuses, phases."""
    conditions = sorted(((c["code"], c["display"]) for c in terminology.load_mapping("conditions.json")["concepts"]),
                        key=lambda c: c[1].lower())
    subtypes = [(c["code"], c.get("display") or c["code"]) for c in terminology.load_mapping("subtypes.json")["concepts"]]
    return {"condition": conditions, "biomarker": subtypes, "recruitment-status": _codes("overallStatus"),
            "phase": _codes("phase"), "eligible-sex": [("female", "Female"), ("male", "Male")]}


@lru_cache(maxsize=1)
def _status_labels() -> dict[str, str]:
    return dict(_codes("overallStatus"))


def condition_code(text: str) -> str | None:
    """The condition group whose code or label is ``text`` (case and spacing ignored), or None."""
    wanted = " ".join(text.split()).lower()
    for code, label in choices()["condition"]:
        if wanted in (code, label.lower()):
            return code
    return None


def system_name(system: str | None) -> str:
    """A short name of a code system (``LOINC``, ``SNOMED CT``, ``MeSH``), else the URL."""
    return _labels()["systems"].get(system or "", system or "")


def concept_text(concept: dict | None) -> str:
    """A CodeableConcept in words: its text, else its first coding's display or code."""
    if not concept:
        return ""
    if concept.get("text"):
        return concept["text"]
    for coding in concept.get("coding") or []:
        if coding.get("display") or coding.get("code"):
            return coding.get("display") or coding["code"]
    return ""


def codings(concept: dict | None) -> list[dict]:
    """The codings of a CodeableConcept, each with ``name`` (its system's short name)."""
    return [{**c, "name": system_name(c.get("system"))} for c in (concept or {}).get("coding") or []
            if c.get("code")]


def recruitment_status(study: dict) -> str:
    """The study's recruitment status in words (its first ``progressStatus`` state that is one)."""
    labels = _status_labels()
    for progress in study.get("progressStatus") or []:
        for coding in (progress.get("state") or {}).get("coding") or []:
            if coding.get("system") == STATUS_SYSTEM and coding.get("code") in labels:
                return labels[coding["code"]]
    return ""


def phase(study: dict) -> str:
    """The study's phase in words."""
    return concept_text(study.get("phase"))


def sponsor(study: dict) -> str:
    """The lead sponsor's name (else any sponsor's)."""
    parties = study.get("associatedParty") or []
    for role in SPONSOR_ROLES:
        for party in parties:
            if any(c.get("code") == role for c in (party.get("role") or {}).get("coding") or []) and party.get("name"):
                return party["name"]
    return ""


def conditions(study: dict) -> list[str]:
    """The study's conditions in words, each once."""
    return list(dict.fromkeys(t for t in (concept_text(c) for c in study.get("condition") or []) if t))


def place(location: dict) -> str:
    """A site's city, state and country."""
    address = location.get("address") or {}
    return ", ".join(p for p in (address.get("city"), address.get("state"), address.get("country")) if p)


def site_status(location: dict) -> str:
    """A site's own recruitment status (its ``characteristic`` coded in research-study-status)."""
    labels = _status_labels()
    for characteristic in location.get("characteristic") or []:
        for coding in characteristic.get("coding") or []:
            if coding.get("system") == STATUS_SYSTEM:
                return labels.get(coding.get("code"), coding.get("display") or coding.get("code") or "")
    return ""


def _quantity(q: dict) -> str:
    unit = q.get("unit") or q.get("code") or ""
    return f"{q.get('comparator', '')} {_number(q.get('value'))} {unit}".strip().replace("  ", " ")


def _number(value) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _range(r: dict) -> str:
    low, high = r.get("low") or {}, r.get("high") or {}
    unit = high.get("unit") or low.get("unit") or ""
    if low and high:
        return f"{_number(low.get('value'))} to {_number(high.get('value'))} {unit}".strip()
    return (f"at least {_number(low.get('value'))} {unit}" if low else f"at most {_number(high.get('value'))} {unit}").strip()


def fact(characteristic: dict) -> dict | None:
    """The computable fact of an eligibility characteristic as a page shows it: ``{"kind": "value",
    "name", "codes", "value"}`` or ``{"kind": "combination", "code", "parts"}``, with ``notes``;
    None when the characteristic is text only."""
    notes = [n.get("text") for n in characteristic.get("note") or [] if n.get("text")]
    by_value = characteristic.get("definitionByTypeAndValue")
    if by_value:
        value = ""
        if "valueQuantity" in by_value:
            value = _quantity(by_value["valueQuantity"])
        elif "valueRange" in by_value:
            value = _range(by_value["valueRange"])
        elif "valueCodeableConcept" in by_value:
            value = concept_text(by_value["valueCodeableConcept"])
        elif "valueBoolean" in by_value:
            value = "yes" if by_value["valueBoolean"] else "no"
        value_codes = codings(by_value.get("valueCodeableConcept"))
        return {"kind": "value", "name": concept_text(by_value.get("type")), "value": value,
                "codes": codings(by_value.get("type")) + value_codes, "notes": notes}
    combination = characteristic.get("definitionByCombination")
    if combination:
        parts = [{"description": c.get("description") or concept_text(c.get("definitionCodeableConcept")),
                  "fact": fact(c)} for c in combination.get("characteristic") or []]
        if not any(p["fact"] for p in parts):
            return None
        return {"kind": "combination", "code": combination.get("code", ""), "parts": parts, "notes": notes}
    return None


def criteria(eligibility: dict | None) -> dict[str, list[dict]]:
    """The eligibility characteristics split into ``inclusion`` and ``exclusion``, each with its
    description, linkId and :func:`fact`."""
    out: dict[str, list[dict]] = {"inclusion": [], "exclusion": []}
    for c in (eligibility or {}).get("characteristic") or []:
        description = c.get("description") or concept_text(c.get("definitionCodeableConcept"))
        out["exclusion" if c.get("exclude") else "inclusion"].append(
            {"link_id": c.get("linkId", ""), "description": description, "fact": fact(c)})
    return out
