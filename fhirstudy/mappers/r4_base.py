"""Shared pieces of the FHIR R5 -> R4 down-conversion: the cross-version extension URLs, value
extensions, code systems whose URL moved, RelatedArtifact. Each mapper module's ``to_r4`` builds
on these; :mod:`fhirstudy.mappers.r4` runs them over one trial's resources.

Code systems whose URL moved between versions and the status table are data in
``mappings/r5-to-r4.json``. Same input, same bytes: nothing here reads a clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import terminology
from .common import compact

TABLE_FILE = "r5-to-r4.json"
EPOCH = "1970-01-01T00:00:00Z"  # Provenance.recorded when the record carries no date at all


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

    def study(self) -> dict | None:
        """The trial's R5 ResearchStudy, if it has one."""
        return next((r for r in self.resources if r["resourceType"] == "ResearchStudy"), None)

    def resolve(self, reference: str | None) -> dict | None:
        """The trial's R5 resource a literal reference ``Type/id`` points to."""
        return next((r for r in self.resources if reference and f"{r['resourceType']}/{r['id']}" == reference), None)
