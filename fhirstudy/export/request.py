"""One export's parameters, as the kick-off gave them, checked (:class:`ExportRequest`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

NDJSON = "application/fhir+ndjson"


@dataclass(frozen=True)
class ExportRequest:
    """What one export asks for.

    ``level``: ``system`` (``[base]/$export``), ``ResearchStudy`` (the studies and every resource
    they reference, and the Provenance of those) or ``Group`` (``group_id``'s studies and theirs).
    ``types``: ``_type`` (None: every type the level exports). ``since``/``until``: instants
    (meta.lastUpdated, ``since`` exclusive... as the IG says: resources updated after ``since``,
    up to ``until`` included). ``type_filters``: per type, the FHIR queries of ``_typeFilter``
    (``"status=active&phase=phase-2"``, without the type; several are OR). ``elements``: the
    ``_elements`` (``"id"``, ``"ResearchStudy.status"``), mandatory elements always kept.
    """

    level: str = "system"
    group_id: str | None = None
    types: tuple[str, ...] | None = None
    since: str | None = None
    until: str | None = None
    type_filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    elements: tuple[str, ...] | None = None
    output_format: str = NDJSON
    include_associated: tuple[str, ...] = ()
    request_url: str = ""      # the kick-off URL, for the manifest's ``request``
    warnings: tuple[str, ...] = ()   # what ``Prefer: handling=lenient`` ignored: written to the error file

    def to_json(self) -> dict:
        """A JSON-ready dict (kept with the job in the database)."""
        out = asdict(self)
        out["type_filters"] = {k: list(v) for k, v in self.type_filters.items()}
        return out

    @classmethod
    def from_json(cls, data: dict) -> "ExportRequest":
        def tup(value):
            return tuple(value) if value is not None else None
        return cls(level=data["level"], group_id=data.get("group_id"), types=tup(data.get("types")),
                   since=data.get("since"), until=data.get("until"),
                   type_filters={k: tuple(v) for k, v in (data.get("type_filters") or {}).items()},
                   elements=tup(data.get("elements")), output_format=data.get("output_format") or NDJSON,
                   include_associated=tuple(data.get("include_associated") or ()),
                   request_url=data.get("request_url") or "", warnings=tuple(data.get("warnings") or ()))
