"""One export's parameters, as the kick-off gave them, checked (:class:`ExportRequest`).

:func:`parse_kickoff` reads a kick-off's parameters (the query string's pairs, or a ``Parameters``
body's, :func:`parameters_pairs`) into an :class:`ExportRequest`, or raises
:class:`~fhirstudy.errors.InvalidRequest` naming the parameter and what is wrong with it:

- ``_outputFormat``: ``application/fhir+ndjson``, ``application/ndjson`` or ``ndjson``;
- ``_type``: comma lists, repeated; each a type the level exports (:func:`exported_types`);
- ``_since``, ``_until``: FHIR instants with a time zone, kept as the store writes
  ``meta.lastUpdated`` (UTC, milliseconds, ``Z``) so the two compare as text;
- ``_typeFilter``: ``Type?query`` (URL-encoded), repeated or comma-separated; each query is parsed
  by the search service as a search of ``Type`` would be, so a bad one is refused at kick-off;
  its type must be exported (and in ``_type`` when that is given);
- ``_elements``: ``element`` or ``Type.element``, comma lists, repeated;
- ``includeAssociatedData``: ``LatestProvenanceResources``, ``RelevantProvenanceResources``.

Any other parameter (``patient``, ``organizeOutputBy``, ``allowPartialManifests``, ...) and any
other ``includeAssociatedData`` value is refused, unless ``lenient`` (``Prefer:
handling=lenient``): then it is ignored and said in ``warnings`` (a line of the export's error
file). A mistake in a value the export does take is refused either way.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Iterable
from urllib.parse import parse_qsl

from fhirstudy.errors import FhirError, InvalidRequest
from fhirstudy.search.index import BadValue, date_range
from fhirstudy.search.query import RESULT_PARAMETERS

NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
# What a study export holds besides the studies: the types studies reference, their results reports
# (Composition) and what those reference, and Provenance.
STUDY_TYPES = ("ResearchStudy", "PlanDefinition", "EvidenceVariable", "Location", "Organization",
               "Practitioner", "Group", "Evidence", "Composition", "Provenance")
ASSOCIATED_DATA = ("LatestProvenanceResources", "RelevantProvenanceResources")
SINGLE = ("_outputFormat", "_since", "_until")   # parameters given at most once
LISTS = ("_type", "_typeFilter", "_elements", "includeAssociatedData")
_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})")
_FILTER_START = re.compile(r",(?=[A-Z][A-Za-z]*\?)")   # a comma that begins the next Type?query
_FILTER = re.compile(r"([A-Z][A-Za-z]*)\?(.*)", re.S)
_ELEMENT = re.compile(r"(?:([A-Z][A-Za-z]*)\.)?([a-z][A-Za-z0-9]*)")
_VALUE_KEYS = ("valueString", "valueCode", "valueInstant", "valueDateTime", "valueUri", "valueUrl",
               "valueCanonical", "valueBoolean", "valueInteger")


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


def exported_types(level: str, served: Iterable[str]) -> tuple[str, ...]:
    """The types an export of ``level`` may hold: every served type at the system level; the
    study and the types it references (:data:`STUDY_TYPES`, those served) for the others."""
    served = sorted(served)
    if level == "system":
        return tuple(served)
    return tuple(t for t in STUDY_TYPES if t in served)


def parameters_pairs(body: dict) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of a kick-off's ``Parameters`` body (``value[x]`` as text);
    InvalidRequest naming the entry for one without a name or a primitive value."""
    parameters = body.get("parameter", [])
    if not isinstance(parameters, list):
        raise InvalidRequest("Parameters.parameter must be a list", expression="Parameters.parameter")
    pairs = []
    for n, parameter in enumerate(parameters):
        where = f"Parameters.parameter[{n}]"
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{where} has no name", expression=where)
        values = [parameter[k] for k in parameter if k.startswith("value") or k in ("resource", "part")]
        if len(values) != 1:
            raise InvalidRequest(f"{where} ({name}) needs exactly one value[x]", expression=where)
        value = values[0]
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        elif not isinstance(value, str):   # a reference, a resource, parts: only ``patient`` takes those
            value = ""
        pairs.append((name, value))
    return pairs


def parse_kickoff(level: str, pairs: Iterable[tuple[str, str]], served: Iterable[str], service, *,
                  group_id: str | None = None, lenient: bool = False, request_url: str = "") -> ExportRequest:
    """The :class:`ExportRequest` of a kick-off at ``level`` with parameters ``pairs`` (see the
    module); ``served``: the store's types; ``service.parse(type, pairs)`` checks each
    ``_typeFilter``. InvalidRequest (``expression`` the parameter) for anything refused."""
    given: dict[str, list[str]] = {}
    warnings: list[str] = []
    for name, value in pairs:
        if name in SINGLE or name in LISTS:
            given.setdefault(name, []).append(value)
        else:
            _unsupported(f"The export parameter {name!r} is not supported", name, lenient, warnings)
    for name in SINGLE:
        if len(given.get(name, ())) > 1:
            raise InvalidRequest(f"{name} is given {len(given[name])} times; it takes one value", expression=name)
    exported = exported_types(level, served)
    output_format = (given.get("_outputFormat") or [NDJSON])[0]
    if output_format not in OUTPUT_FORMATS:
        raise InvalidRequest(f"_outputFormat {output_format!r} is not offered: this server writes "
                             f"{', '.join(OUTPUT_FORMATS)}", expression="_outputFormat")
    types = _types(given.get("_type"), exported, level, lenient, warnings)
    since, until = (_instant(name, (given.get(name) or [None])[0]) for name in ("_since", "_until"))
    if since and until and since > until:
        raise InvalidRequest(f"_since ({given['_since'][0]}) is after _until ({given['_until'][0]})",
                             expression="_since")
    filters = _type_filters(given.get("_typeFilter", []), exported, types, service)
    elements = _elements(given.get("_elements"), exported)
    associated = []
    for value in _items(given.get("includeAssociatedData", [])):
        if value in ASSOCIATED_DATA:
            associated.append(value)
        else:
            _unsupported(f"includeAssociatedData {value!r} is not supported (this server takes "
                         f"{', '.join(ASSOCIATED_DATA)})", "includeAssociatedData", lenient, warnings)
    return ExportRequest(level=level, group_id=group_id, types=types, since=since, until=until,
                         type_filters=filters, elements=elements, output_format=NDJSON,
                         include_associated=tuple(dict.fromkeys(associated)), request_url=request_url,
                         warnings=tuple(warnings))


def _unsupported(message: str, name: str, lenient: bool, warnings: list[str]) -> None:
    if not lenient:
        raise InvalidRequest(f"{message}; send 'Prefer: handling=lenient' to have it ignored",
                             expression=name, code="not-supported")
    warnings.append(f"{message}: ignored (Prefer: handling=lenient)")


def _items(values: Iterable[str]) -> list[str]:
    """The comma-separated items of repeated values, stripped, empty ones dropped."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _types(values: list[str] | None, exported: tuple[str, ...], level: str, lenient: bool,
           warnings: list[str]) -> tuple[str, ...] | None:
    if values is None:
        return None
    kept = []
    for rtype in dict.fromkeys(_items(values)):
        if rtype in exported:
            kept.append(rtype)
        else:
            _unsupported(f"_type {rtype!r} is not a type a {level}-level export holds (it holds "
                         f"{', '.join(exported)})", "_type", lenient, warnings)
    if not kept:
        raise InvalidRequest("_type names no type this export holds", expression="_type")
    return tuple(kept)


def _instant(name: str, value: str | None) -> str | None:
    """``value`` as the store writes lastUpdated (UTC, milliseconds, Z); InvalidRequest unless a
    FHIR instant with a time zone."""
    if value is None:
        return None
    text = value.strip()
    if not _INSTANT.fullmatch(text):
        raise InvalidRequest(f"{name} must be a FHIR instant with a time zone (2025-01-02T03:04:05Z, "
                             f"2025-01-02T04:04:05.123+01:00), not {value!r}", expression=name)
    try:
        return date_range(text)[0] + "Z"
    except BadValue as exc:
        raise InvalidRequest(f"{name}: {exc}", expression=name) from None


def _type_filters(values: list[str], exported: tuple[str, ...], types: tuple[str, ...] | None,
                  service) -> dict[str, tuple[str, ...]]:
    filters: dict[str, list[str]] = {}
    for value in values:
        for text in _FILTER_START.split(value):
            text = text.strip()
            if not text:
                continue
            found = _FILTER.fullmatch(text)
            if not found or not found.group(2):
                raise InvalidRequest(f"_typeFilter {text!r} is not a FHIR query Type?criteria "
                                     f"(e.g. ResearchStudy?status=active)", expression="_typeFilter")
            rtype, query = found.groups()
            if rtype not in exported:
                raise InvalidRequest(f"_typeFilter {text!r}: {rtype} is not a type this export holds",
                                     expression="_typeFilter")
            if types is not None and rtype not in types:
                raise InvalidRequest(f"_typeFilter {text!r}: {rtype} is not in _type ({','.join(types)})",
                                     expression="_typeFilter")
            pairs = parse_qsl(query, keep_blank_values=True)
            results = sorted({name for name, _ in pairs if name in RESULT_PARAMETERS})
            if results:
                raise InvalidRequest(f"_typeFilter {text!r}: {', '.join(results)} is not a search criterion; "
                                     f"a filter takes criteria only", expression="_typeFilter")
            try:
                service.parse(rtype, pairs)
            except FhirError as exc:
                raise InvalidRequest(f"_typeFilter {text!r}: {exc.diagnostics}", expression="_typeFilter") from None
            filters.setdefault(rtype, []).append(query)
    return {rtype: tuple(dict.fromkeys(queries)) for rtype, queries in filters.items()}


def _elements(values: list[str] | None, exported: tuple[str, ...]) -> tuple[str, ...] | None:
    if values is None:
        return None
    out = []
    for item in _items(values):
        found = _ELEMENT.fullmatch(item)
        if not found:
            raise InvalidRequest(f"_elements {item!r} is not an element (status) or a type's element "
                                 f"(ResearchStudy.status)", expression="_elements")
        if found.group(1) and found.group(1) not in exported:
            raise InvalidRequest(f"_elements {item!r}: {found.group(1)} is not a type this export holds",
                                 expression="_elements")
        out.append(item)
    return tuple(dict.fromkeys(out)) or None
