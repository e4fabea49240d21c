"""Preparing a trial for a store: down-converted to R4 when the store speaks R4 (its results left
out, or in cross-version extensions with ``r4_results="extensions"``), every resource with its
narrative (the resources R4 adds get theirs here) or, asked so, with none (``push
--no-narrative``), every resource with a business identifier (``urn:fhirstudy:resource-id|<stable
id>`` where it has none; a ``meta.tag`` for types with no identifier element, or only one, as R4
Composition), and the content hash the journal keeps. Pure functions: no HTTP."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from ..mappers.r4 import extension_url, to_r4
from ..narrative import add_narratives, strip_narratives

RESOURCE_ID_SYSTEM = "urn:fhirstudy:resource-id"
NO_IDENTIFIER = frozenset({"Provenance"})   # types with no identifier element (R4 and R5)
ONE_IDENTIFIER = {"4.0": frozenset({"Composition"})}  # identifier 0..1 (not a list): tagged as well
RESULT_TYPES = ("Group", "Evidence", "Composition")  # the R5 types of a trial's results (R5 has no other Group)


@dataclass
class PreparedTrial:
    """A trial's resources in the store's FHIR version, with identifiers, and their hash."""

    id: str
    resources: list[dict]
    content_hash: str
    source: str | None = None
    note: str | None = None  # what the store's FHIR version could not take (results, to an R4 store)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")


def business_identifier(resource: dict) -> dict | None:
    """The identifier a resource is matched by: the official one with a system, else the first with
    a system (the ResearchStudy's registry number; ``urn:fhirstudy:resource-id`` for the others)."""
    held = resource.get("identifier", [])
    with_system = [i for i in (held if isinstance(held, list) else [held]) if i.get("system") and i.get("value")]
    return next((i for i in with_system if i.get("use") == "official"), with_system[0] if with_system else None)


def criteria(resource: dict) -> str | None:
    """``identifier=system|value`` of a resource (``_tag=urn:fhirstudy:resource-id|<id>`` for a
    type without identifiers), None when it has neither."""
    ident = business_identifier(resource)
    if ident:
        return f"identifier={_escape(ident['system'])}|{_escape(ident['value'])}"
    tag = next((t for t in (resource.get("meta") or {}).get("tag", []) if t.get("system") == RESOURCE_ID_SYSTEM), None)
    return f"_tag={_escape(tag['system'])}|{_escape(tag['code'])}" if tag else None


def with_identifiers(resources: list[dict], fhir_version: str = "5.0") -> list[dict]:
    """The resources, each with a business identifier (added where it has none with a system; a
    ``meta.tag`` for the types that have no identifier element, or a single one, in ``fhir_version``)."""
    tagged = NO_IDENTIFIER | ONE_IDENTIFIER.get(fhir_version, frozenset())
    out = []
    for r in resources:
        if r["resourceType"] in tagged and not business_identifier(r):
            r = dict(r)
            meta = dict(r.get("meta") or {})
            meta["tag"] = [*meta.get("tag", []), {"system": RESOURCE_ID_SYSTEM, "code": r["id"]}]
            r["meta"] = meta
        elif business_identifier(r) is None:
            r = dict(r)
            r["identifier"] = [*r.get("identifier", []), {"system": RESOURCE_ID_SYSTEM, "value": r["id"]}]
        out.append(r)
    return out


def content_hash(resources: list[dict], fhir_version: str) -> str:
    """SHA-256 of a trial's resources (keys sorted, resources by type and id) and the version."""
    digest = hashlib.sha256(fhir_version.encode())
    for r in sorted(resources, key=lambda r: (r["resourceType"], r["id"])):
        digest.update(orjson.dumps(r, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


def prepare_trial(resources: list[dict], fhir_version: str, source: str | None = None,
                  r4_results: str = "omit", narrative: bool = True) -> PreparedTrial:
    """A trial's R5 resources (ResearchStudy first) made ready for a store of ``fhir_version``;
    ``r4_results`` says what an R4 store gets of the results ("omit", or "extensions"); with
    ``narrative`` every resource has its ``text`` (those without one, such as what the R4
    conversion adds or a store loaded before narratives, get it), without it none has one."""
    left_out: list[dict] = []
    if fhir_version == "4.0":
        converted = to_r4(resources, left_out, results=r4_results)
        note = left_out_note(left_out) if r4_results == "omit" else extensions_note(resources)
    else:
        converted, note = orjson.loads(orjson.dumps(resources)), None  # a deep copy
    converted = add_narratives(converted, only_missing=True) if narrative else strip_narratives(converted)
    converted = with_identifiers(converted, fhir_version)
    return PreparedTrial(converted[0]["id"], converted, content_hash(converted, fhir_version), source, note)


def _counted(resources: list[dict]) -> str:
    counts: dict[str, int] = {}
    for r in resources:
        counts[r["resourceType"]] = counts.get(r["resourceType"], 0) + 1
    return ", ".join(f"{n} {t}" for t, n in counts.items())


def left_out_note(left_out: list[dict]) -> str | None:
    """What the R4 conversion left out, in words for the push report ("results not sent ...")."""
    if not left_out:
        return None
    return (f"results not sent ({_counted(left_out)}): R4 Evidence cannot carry the statistics; push to an "
            "R5 store for the trial's results, or use --r4-results=extensions")


def extensions_note(resources: list[dict]) -> str | None:
    """What went to an R4 store in cross-version extensions, in words ("results sent as ..."); None
    for a trial without results."""
    results = [r for r in resources if r["resourceType"] in RESULT_TYPES]
    if not results:
        return None
    return (f"results sent as R5 cross-version extensions ({_counted(results)}): the statistics are in "
            f"Evidence.extension {extension_url('Evidence.statistic')}")


def bundle_resources(bundle: dict) -> list[dict]:
    """The resources of a transaction Bundle made by ``fhirstudy convert`` (ResearchStudy first)."""
    return [e["resource"] for e in bundle.get("entry", [])]
