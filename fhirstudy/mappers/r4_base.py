"""Shared pieces of the FHIR R5 -> R4 down-conversion: the cross-version extension URLs, value
extensions, code systems whose URL moved, RelatedArtifact. Each mapper module's ``to_r4`` builds
on these; :mod:`fhirstudy.mappers.r4` runs them over one trial's resources.

``element_ext(path, value)`` writes any R5 element as its cross-version extension, driven by the
official R5 element table (``mappings/fhir-r5-elements.json``, from ``hl7.fhir.r5.core``): a
backbone element is a complex extension with one sub-extension per child, named by the child
(repeated for each item of a list, nested for a backbone child, following a content reference:
``attributeEstimate.attributeEstimate``); a choice child ``value[x]`` is the sub-extension
``value`` with the chosen type's ``value[x]``; a data type is ``value<Type>``.

Code systems whose URL moved between versions and the status table are data in
``mappings/r5-to-r4.json``. Same input, same bytes: nothing here reads a clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import mappings, terminology
from .common import compact

TABLE_FILE = "r5-to-r4.json"
ELEMENTS_FILE = "fhir-r5-elements.json"  # the official R5 element table (in fhirstudy.mappings)
EPOCH = "1970-01-01T00:00:00Z"  # Provenance.recorded when the record carries no date at all
RESULTS_MODES = ("omit", "extensions")  # what an R4 conversion does with the results (push --r4-results)
R5_ONLY_TYPES = frozenset({"CodeableReference", "Availability", "ExtendedContactDetail", "VirtualServiceDetail",
                           "RatioRange", "MonetaryComponent", "integer64",  # no R4 data type to carry them
                           "RelatedArtifact"})  # R5 added elements: converted by related_artifact, not as is


def table() -> dict:
    """The R5 -> R4 table (``mappings/r5-to-r4.json``)."""
    return terminology.load_mapping(TABLE_FILE)


def extension_url(path: str) -> str:
    """The cross-version extension URL of an R5 element (``ResearchStudy.label``)."""
    return table()["extensionBase"] + path


def ext(url: str, kind: str, value: Any) -> dict | None:
    """One extension with ``value<kind>``; None for an empty value."""
    if value is None or value == [] or value == {} or value == "":
        return None
    return {"url": url, f"value{kind}": value}


def complex_ext(url: str, parts: list[tuple[str, str, Any]]) -> dict | None:
    """A complex extension: one sub-extension per (child name, value type, value); list values
    repeat the sub-extension."""
    subs = []
    for name, kind, value in parts:
        for v in value if isinstance(value, list) else [value]:
            sub = ext(name, kind, concepts(v) if kind == "CodeableConcept" else v)
            if sub:
                subs.append(sub)
    return {"url": url, "extension": subs} if subs else None


def _elements() -> dict:
    return mappings.load(ELEMENTS_FILE)["elements"]


def _child(path: str, key: str) -> tuple[str, dict, str | None]:
    """The definition of an R5 JSON key under ``path``: (element path, definition, the chosen type
    of a choice element or None). A key the table does not know is a ValueError."""
    elements = _elements()
    if f"{path}.{key}" in elements:
        return f"{path}.{key}", elements[f"{path}.{key}"], None
    depth = path.count(".") + 1
    for types_at in (p for p in elements if p.startswith(f"{path}.") and p.endswith("[x]") and p.count(".") == depth):
        stem = types_at.rsplit(".", 1)[1][:-3]
        chosen = key[len(stem):]
        if key.startswith(stem) and any(t[:1].upper() + t[1:] == chosen for t in elements[types_at]["types"]):
            return types_at, elements[types_at], chosen
    raise ValueError(f"{path}.{key} is not an R5 element")


def _element_value(path: str, definition: dict, value: Any, url: str, chosen: str | None) -> dict | None:
    if definition.get("contentReference"):
        path, definition = definition["contentReference"], _elements()[definition["contentReference"]]
    types = definition["types"]
    if types in (["BackboneElement"], ["Element"]):
        subs = []
        for key, child in value.items():
            if key in ("id", "extension", "modifierExtension"):
                continue
            child_path, child_def, child_type = _child(path, key)
            name = child_path.rsplit(".", 1)[1].removesuffix("[x]")
            subs += [e for v in (child if isinstance(child, list) else [child])
                     if (e := _element_value(child_path, child_def, v, name, child_type))]
        return {"url": url, "extension": subs} if subs else None
    kind = chosen or types[0]
    if kind in R5_ONLY_TYPES or len(types) != 1 and not chosen:
        raise ValueError(f"{path}: no R4 cross-version extension for type {kind}")
    kind = kind[:1].upper() + kind[1:]
    return ext(url, kind, concepts(value) if kind in ("CodeableConcept", "Coding") else value)


def element_ext(path: str, value: Any) -> dict | None:
    """The cross-version extension of one R5 element value (``Evidence.statistic``, one statistic):
    ``http://hl7.org/fhir/5.0/StructureDefinition/extension-<path>``; None for an empty value."""
    element, definition, chosen = _child(*path.rsplit(".", 1))  # a choice: "Evidence.citeAsMarkdown"
    return _element_value(element, definition, value, extension_url(element.removesuffix("[x]")), chosen)


def concepts(value: Any) -> Any:
    """Rewrite code systems whose URL moved between R5 and R4 (anywhere inside ``value``)."""
    systems = table()["systems"]
    if isinstance(value, dict):
        out = {k: concepts(v) for k, v in value.items()}
        if isinstance(out.get("system"), str) and out["system"] in systems:
            out["system"] = systems[out["system"]]
        return out
    if isinstance(value, list):
        return [concepts(v) for v in value]
    return value


def related_artifact(ra: dict, owner: str) -> dict:
    """R5 RelatedArtifact -> R4 (``resourceReference``, ``classifier`` and ``publicationDate``
    become extensions; ``document`` is an Attachment in both)."""
    base = "RelatedArtifact"
    extensions = [e for e in (
        *[ext(extension_url(f"{base}.classifier"), "CodeableConcept", c) for c in ra.get("classifier", [])],
        ext(extension_url(f"{base}.resourceReference"), "Reference", ra.get("resourceReference")),
        ext(extension_url(f"{base}.publicationDate"), "Date", ra.get("publicationDate")),
    ) if e]
    return compact({
        "extension": extensions,
        "type": ra["type"],
        "label": ra.get("label"),
        "display": ra.get("display"),
        "citation": ra.get("citation"),
        "url": (ra.get("document") or {}).get("url"),
        "document": ra.get("document"),
    })


def instant(date: str | None) -> str | None:
    if not date:
        return None
    if "T" in date:
        return date
    parts = (date.split("-") + ["01", "01"])[:3]
    return "-".join(parts) + "T00:00:00Z"


@dataclass(frozen=True)
class R4Context:
    """What an R4 converter may look at besides its own resource: the trial's R5 resources, and
    the resources earlier converters added (R4 needs a Group, an Organization, a Practitioner
    where R5 has a backbone element)."""

    resources: list[dict]
    added: list[dict] = field(default_factory=list)
    left_out: list[dict] = field(default_factory=list)  # R5 resources R4 cannot hold (the results)
    results: str = "omit"  # "extensions": the results go too, what R4 lacks in cross-version extensions

    def study(self) -> dict | None:
        """The trial's R5 ResearchStudy, if it has one."""
        return next((r for r in self.resources if r["resourceType"] == "ResearchStudy"), None)

    def resolve(self, reference: str | None) -> dict | None:
        """The trial's R5 resource a literal reference ``Type/id`` points to."""
        return next((r for r in self.resources if reference and f"{r['resourceType']}/{r['id']}" == reference), None)
