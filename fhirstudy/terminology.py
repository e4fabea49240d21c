"""Terminology kept as data in :mod:`fhirstudy.mappings`, loaded once; code reads it, never repeats it.

- ``ctgov-to-fhir.json``: ClinicalTrials.gov enum values -> FHIR R5 codings (official package codes).
- ``conditions.json``: fhirstudy's condition-group CodeSystem, the patterns that recognise each
  group in condition text or MeSH ids, and the cited external codings each group adds.
- ``subtypes.json``: fhirstudy's disease-subtype CodeSystem (the rules that find subtypes in a
  trial are :mod:`fhirstudy.mappers.subtypes`).
- ``mesh.json``: the MeSH system and the rule that writes a descriptor id in NLM's form.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from fhirstudy import mappings

MESH_SYSTEM = mappings.load("mesh.json")["system"]
# The ResearchStudy extension that carries one MeSH ancestor of the study's conditions.
CONDITION_ANCESTOR_URL = mappings.load("conditions.json")["ancestorExtension"]["url"]


def load_mapping(name: str) -> dict:
    """One JSON table of :mod:`fhirstudy.mappings` by file name, parsed once per process."""
    return mappings.load(name)


def coding(section: str, key: str | None) -> dict | None:
    """The FHIR Coding for a source value in a section of ``ctgov-to-fhir.json``, or None."""
    if key is None:
        return None
    table = load_mapping("ctgov-to-fhir.json")[section]
    entry = table["codes"].get(key)
    if entry is None:
        return None
    return {"system": table["system"], "code": entry["code"], "display": entry["display"]}


@lru_cache(maxsize=1)
def _mesh_id_rule() -> tuple[re.Pattern, int, int]:
    rule = load_mapping("mesh.json")["descriptorId"]
    return re.compile(rule["pattern"]), rule["paddedBelow"], rule["digits"]


def mesh_descriptor_id(ident: str) -> str:
    """A MeSH descriptor id in NLM's own form (``mesh.json``): ``D000001943`` -> ``D001943``; a
    real nine-digit id (``D000086382``) and anything else are returned unchanged."""
    pattern, below, digits = _mesh_id_rule()
    match = pattern.match(ident)
    if match and int(match.group(1)) < below:
        return f"D{int(match.group(1)):0{digits}d}"
    return ident


def normalize_text(text: str) -> str:
    """``text`` as fhirstudy compares it: case-folded and without accents, the one normalisation
    for index rows, search values and terminology matching.

    The Unicode compatibility caseless match (Unicode 15, D146: NFKD(casefold(NFKD(casefold(NFD(x))))),
    so composed and decomposed input agree, ``Straße`` is ``strasse`` (which ``lower`` does not
    do) and ``ﬁ`` is ``fi``), then the combining marks removed (``Étude`` -> ``etude``).
    """
    if text.isascii():  # the common case, and the same answer: ASCII casefold is lower
        return text.lower()
    step = unicodedata.normalize("NFD", text).casefold()
    step = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", step).casefold())
    return "".join(c for c in step if not unicodedata.combining(c))


def fold(text: str) -> str:
    """:func:`normalize_text` with whitespace collapsed, for matching condition and intervention
    names."""
    return " ".join(normalize_text(text).split())


@lru_cache(maxsize=None)
def _condition_rules() -> tuple[tuple[dict, tuple[re.Pattern, ...], tuple[re.Pattern, ...]], ...]:
    data = load_mapping("conditions.json")
    rules = []
    for concept in data["concepts"]:
        include = tuple(re.compile(p, re.IGNORECASE) for p in concept.get("text", []))
        exclude = tuple(re.compile(p, re.IGNORECASE) for p in concept.get("exclude_text", []))
        rules.append((concept, include, exclude))
    return tuple(rules)


def condition_codings(text: str, mesh_ids: frozenset[str] = frozenset(),
                      ancestor_ids: frozenset[str] = frozenset()) -> list[dict]:
    """Codings to add to a condition: each fhirstudy group it belongs to, and that group's cited
    external codes. A group matches on the condition text (its patterns, unless an exclude
    pattern matches too), on a MeSH id of the condition (``mesh_ids``) among the descriptors the
    group covers, or on a MeSH ancestor (``ancestor_ids``) among those of them not marked
    ``"ancestor": false`` (ids in either form, :func:`mesh_descriptor_id`)."""
    system = load_mapping("conditions.json")["codeSystem"]["url"]
    mesh_ids = frozenset(mesh_descriptor_id(m) for m in mesh_ids)
    ancestor_ids = frozenset(mesh_descriptor_id(m) for m in ancestor_ids)
    folded = fold(text)
    out: list[dict] = []
    for concept, include, exclude in _condition_rules():
        by_text = any(p.search(folded) for p in include) and not any(p.search(folded) for p in exclude)
        covered = concept.get("mesh", [])
        by_mesh = bool(mesh_ids & {m["id"] for m in covered}
                       or ancestor_ids & {m["id"] for m in covered if m.get("ancestor", True)})
        if by_text or by_mesh:
            out.append({"system": system, "code": concept["code"], "display": concept["display"]})
            out.extend({k: c[k] for k in ("system", "code", "display")} for c in concept["codings"])
    return out


def condition_code_system() -> dict:
    """fhirstudy's condition-group CodeSystem as a FHIR R5 resource (served and loaded)."""
    data = load_mapping("conditions.json")
    concepts = [{k: c[k] for k in ("code", "display", "definition") if k in c} for c in data["concepts"]]
    return {**data["codeSystem"], "count": len(concepts), "concept": concepts}


def subtype_code_system() -> dict:
    """fhirstudy's disease-subtype CodeSystem (``subtypes.json``) as a FHIR R5 resource (served
    and loaded)."""
    data = load_mapping("subtypes.json")
    concepts = [{k: c[k] for k in ("code", "display", "definition")} for c in data["concepts"]]
    return {**data["codeSystem"], "count": len(concepts), "concept": concepts}
