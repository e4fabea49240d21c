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
    marks = [c for c in set(step) if unicodedata.combining(c)]  # each distinct character asked once
    if not marks:
        return step
    return step.translate(dict.fromkeys(map(ord, marks)))


def fold(text: str) -> str:
    """:func:`normalize_text` with whitespace collapsed, for matching condition and intervention
    names."""
    return " ".join(normalize_text(text).split())


@lru_cache(maxsize=None)
def _condition_rules() -> tuple[tuple[dict, tuple[re.Pattern, ...], tuple[re.Pattern, ...], frozenset[str],
                                      frozenset[str]], ...]:
    """Per condition group: the concept, its text and exclude patterns, the MeSH ids it covers and
    those of them an ancestor may match by."""
    data = load_mapping("conditions.json")
    rules = []
    for concept in data["concepts"]:
        include = tuple(re.compile(p, re.IGNORECASE) for p in concept.get("text", []))
        exclude = tuple(re.compile(p, re.IGNORECASE) for p in concept.get("exclude_text", []))
        covered = concept.get("mesh", [])
        rules.append((concept, include, exclude, frozenset(m["id"] for m in covered),
                      frozenset(m["id"] for m in covered if m.get("ancestor", True))))
    return tuple(rules)


@lru_cache(maxsize=1 << 14)
def _groups_by_text(folded: str) -> frozenset[int]:
    """The condition groups (by place in the table) whose patterns match a folded condition text
    (memoized: a pure function, and the same condition wording recurs across trials)."""
    return frozenset(n for n, (_, include, exclude, _, _) in enumerate(_condition_rules())
                     if any(p.search(folded) for p in include) and not any(p.search(folded) for p in exclude))


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
    by_mesh, by_ancestor = _groups_by_mesh()
    groups = set(_groups_by_text(fold(text)))
    for m in mesh_ids:
        groups.update(by_mesh.get(m, ()))
    for m in ancestor_ids:
        groups.update(by_ancestor.get(m, ()))
    rules = _condition_rules()
    out: list[dict] = []
    for n in sorted(groups):  # in the table's order
        concept = rules[n][0]
        out.append({"system": system, "code": concept["code"], "display": concept["display"]})
        out.extend({k: c[k] for k in ("system", "code", "display")} for c in concept["codings"])
    return out


@lru_cache(maxsize=None)
def _groups_by_mesh() -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """MeSH id -> the condition groups (by place in the table) covering it, and the same for the
    ids an ancestor may match by."""
    by_mesh: dict[str, list[int]] = {}
    by_ancestor: dict[str, list[int]] = {}
    for n, (_, _, _, covered, ancestors) in enumerate(_condition_rules()):
        for m in covered:
            by_mesh.setdefault(m, []).append(n)
        for m in ancestors:
            by_ancestor.setdefault(m, []).append(n)
    return ({k: tuple(v) for k, v in by_mesh.items()}, {k: tuple(v) for k, v in by_ancestor.items()})


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
