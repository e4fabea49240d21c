"""What one FHIR document asks to be written: a :class:`Unit` of :class:`Entry` writes, each with
the place its problems are reported at.  No database.

    a resource                      one PUT ``Type/id`` (an id is required: loading twice makes no copy);
                                    an OperationOutcome is a report, not data: a warning
    Bundle transaction              its entries' requests, all or nothing (``atomic``)
    Bundle batch                    its entries' requests, each on its own
    Bundle collection, searchset    a PUT ``Type/id`` per entry's resource, each on its own (a
                                    searchset's ``search.mode: outcome`` entry is not data: left out)

A Bundle's entries share one map of ``urn:uuid`` fullUrls (``refs``), so references between them
are rewritten to ``Type/id`` as the server's transaction does; a resource on its own keeps its
references as they are (``refs`` None), as a REST PUT does.  Entries are numbered by their position
in a Bundle file (1 first) or by the NDJSON line of their document.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhirstudy.errors import FhirError, Problem
from fhirstudy.server.interactions import WriteRequest, request_from_entry

WITH_REQUESTS = ("transaction", "batch")
OF_RESOURCES = ("collection", "searchset")
BUNDLE_TYPES = WITH_REQUESTS + OF_RESOURCES


@dataclass
class Entry:
    """One write of a document; ``where`` is ``Bundle.entry[i]`` for a Bundle's entry."""

    file: str
    record: int
    request: WriteRequest
    where: str | None = None


@dataclass
class Unit:
    """The writes of one document: ``atomic`` for a transaction Bundle (all or nothing).
    ``problems`` are entries that are not writes (each fails; in an atomic unit, the unit);
    ``warnings`` entries left out that write nothing (a GET)."""

    file: str
    record: int | None  # the document's own place: its NDJSON line, None for a whole file
    entries: list[Entry] = field(default_factory=list)
    atomic: bool = False
    refs: dict[str, str] | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def unit_of(file: str, record: int, ndjson: bool, data: dict) -> Unit:
    """The writes FHIR document ``data`` (read from ``file``, line or record ``record``) asks for."""
    unit = Unit(file, record if ndjson else None)
    kind = data.get("type")
    if data["resourceType"] == "OperationOutcome":
        unit.warnings.append(Problem("an OperationOutcome reports on something, it is not data (a Bulk export's "
                                     "error file): not loaded", "resourceType", file, record, "warning"))
        return unit
    if data["resourceType"] != "Bundle":
        _resource(unit, data, record, None, None)
        return unit
    if kind not in BUNDLE_TYPES:
        unit.problems.append(Problem(f"Bundle.type {kind!r} is not loaded: only {', '.join(BUNDLE_TYPES)} "
                                     "Bundles are read entry by entry", "Bundle.type", file, record))
        return unit
    entries = data.get("entry", [])
    if not isinstance(entries, list):
        unit.problems.append(Problem("Bundle.entry must be an array", "Bundle.entry", file, record))
        return unit
    unit.atomic, unit.refs = kind == "transaction", {}
    for index, entry in enumerate(entries):
        number = record if ndjson else index + 1
        if kind in WITH_REQUESTS:
            _request(unit, index, entry, number)
        else:
            _listed(unit, index, entry, number)
    if not entries:
        unit.warnings.append(Problem(f"an empty {kind} Bundle: nothing to load", "Bundle.entry", file, record,
                                     "warning"))
    return unit


def _request(unit: Unit, index: int, entry: Any, number: int) -> None:
    where = f"Bundle.entry[{index}]"
    try:
        request = request_from_entry(index, entry, "")
    except FhirError as exc:
        unit.problems.append(Problem(exc.diagnostics, exc.expression or where, unit.file, number))
        return
    if request.method == "GET":
        unit.warnings.append(Problem("a GET entry reads and writes nothing: not loaded", f"{where}.request",
                                     unit.file, number, "warning"))
        return
    unit.entries.append(Entry(unit.file, number, request, where))


def _listed(unit: Unit, index: int, entry: Any, number: int) -> None:
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict):
        unit.problems.append(Problem("an entry must be an object", where, unit.file, number))
        return
    search = entry.get("search")
    if isinstance(search, dict) and search.get("mode") == "outcome":
        return  # the searchset's OperationOutcome about the search itself, not data
    resource, full_url = entry.get("resource"), entry.get("fullUrl")
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        unit.problems.append(Problem("an entry needs a resource (a JSON object with resourceType)",
                                     f"{where}.resource", unit.file, number))
        return
    _resource(unit, resource, number, where, full_url if isinstance(full_url, str) else None)


def _resource(unit: Unit, resource: dict, number: int, where: str | None, full_url: str | None) -> None:
    rtype, rid = resource["resourceType"], resource.get("id")
    if rid is None:
        unit.problems.append(Problem(
            "a resource needs an id to be loaded: it is stored under its own id (PUT), so that loading "
            "it again makes no copy", f"{where}.resource.id" if where else f"{rtype}.id", unit.file, number))
        return
    unit.entries.append(Entry(unit.file, number, WriteRequest(
        "PUT", rtype, rid=rid, resource=resource, full_url=full_url), where))
