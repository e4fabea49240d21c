"""One export from one snapshot of the store, written as NDJSON files.

What is exported, by level (:class:`~.request.ExportRequest`):

- ``system``: every resource of each type asked (``_type``; else every stored type) that meets
  one of the type's ``_typeFilter`` queries.
- ``ResearchStudy``: the studies that meet ResearchStudy's filters, the Compositions whose
  ``subject`` is one of them (the results reports), every resource those reference, and what those
  reference in turn (PlanDefinition, EvidenceVariable, Location, Organization, Group, Evidence ...:
  literal references ``Type/id``, followed to the end), and the Provenance whose target is any of
  them. A referenced resource must meet its own type's filters too.
- ``Group``: the same from the studies the Group lists (those it references, and those that
  reference it).

``_since``/``_until`` then keep only what was updated in that span (the set itself is decided
without them: a Location updated since is exported though its study is not); ``_type`` keeps
only those types; ``_elements`` cuts resources down as a search's ``_elements`` does;
``includeAssociatedData`` (``LatestProvenanceResources``, ``RelevantProvenanceResources``) adds
at the system level the Provenance of what was exported. With ``_since``, each resource deleted in
the span is a line of a ``deleted`` file: a transaction Bundle with its DELETE request.

Lines are the stored JSON bytes themselves (no parsing, except to follow references or cut
elements); a type's file is split past ``max_file_bytes``. Everything comes from one
:class:`~fhirstudy.store.snapshot.Snapshot`, whose time is the export's ``transactionTime``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

import orjson

from fhirstudy.search.subset import subset
from fhirstudy.store.repository import StoredResource

from .request import ExportRequest

MAX_FILE_BYTES = 64 * 2**20   # an output file is split past this many bytes (at a line's end)


@dataclass
class OutputFile:
    """One written file: its resource type (``OperationOutcome`` for errors), name in the
    directory and number of lines."""

    type: str
    name: str
    count: int


@dataclass
class ExportResult:
    """What an export wrote: the snapshot's ``transactionTime`` and the files of ``output``,
    ``error`` and ``deleted`` (``deleted``: Bundles of DELETE requests, one per line, for
    resources deleted after ``since``)."""

    transaction_time: str
    output: list[OutputFile] = field(default_factory=list)
    error: list[OutputFile] = field(default_factory=list)
    deleted: list[OutputFile] = field(default_factory=list)


class Cancelled(Exception):
    """The export was cancelled while it ran (``cancelled()`` said so)."""


PROVENANCE = ("LatestProvenanceResources", "RelevantProvenanceResources")
_REFERENCE_BYTES = re.compile(rb'"reference":"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[^"/]+)?"')


def write_export(store, service, request: ExportRequest, directory: Path, *,
                 max_file_bytes: int = MAX_FILE_BYTES,
                 progress: Callable[[int, int | None], None] = lambda done, total: None,
                 cancelled: Callable[[], bool] = lambda: False) -> ExportResult:
    """Write the export ``request`` asks for into ``directory`` (created empty by the caller) from
    one snapshot of ``store``; ``service`` parses ``_typeFilter`` queries. ``progress(done,
    total)`` is called now and then (resources written, and the total when known);
    ``cancelled()`` is asked between pages and raises :class:`Cancelled` when true. Files are
    complete when this returns; on any exception the directory's content is to be discarded."""
    filters = {rtype: [service.parse(rtype, _pairs(q)) for q in queries]
               for rtype, queries in request.type_filters.items()}
    with store.snapshot() as snapshot:
        files = _Files(Path(directory), max_file_bytes)
        run = _Run(snapshot, request, filters, files, progress, cancelled, sorted(store.registry.served_types))
        try:
            run.export()
            for warning in request.warnings:
                files.write("OperationOutcome", "error", orjson.dumps({"resourceType": "OperationOutcome", "issue": [
                    {"severity": "warning", "code": "not-supported", "diagnostics": warning}]}))
            progress(run.done, run.done)
        finally:
            files.close()
        return ExportResult(snapshot.transaction_time, files.listed("output"), files.listed("error"),
                            files.listed("deleted"))


def _pairs(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl
    return parse_qsl(query, keep_blank_values=True)


class _Run:
    """One export's walk over the snapshot (see the module)."""

    def __init__(self, snapshot, request: ExportRequest, filters: dict, files: "_Files", progress, cancelled,
                 served: list[str]):
        self.snapshot, self.request, self.filters, self.files = snapshot, request, filters, files
        self.progress, self.cancelled = progress, cancelled
        self.types = set(request.types) if request.types else None
        self.served = served
        self.done = 0

    def export(self) -> None:
        request, snapshot = self.request, self.snapshot
        if request.level == "system":
            types = [t for t in self.served if self.types is None or t in self.types]
            total = sum(snapshot.count(t, request.since, request.until, self.filters.get(t)) for t in types)
            follow = bool(set(request.include_associated) & set(PROVENANCE))
            for rtype in types:
                for page in snapshot.pages(rtype, request.since, request.until, self.filters.get(rtype)):
                    self._check()
                    self._write(page)
                    if follow:
                        snapshot.want(((r.type, r.id) for r in page), done=True)
                    self.progress(self.done, total)
            if follow and (self.types is None or "Provenance" not in self.types):
                self._provenance(force=True)
        else:
            for page in self._studies():
                self._check()
                snapshot.want(((r.type, r.id) for r in page), done=True)
                snapshot.want(ref for r in page for ref in references(r.json))
                self._write([r for r in page if self._in_span(r)])
                self.progress(self.done, None)
            self._reports()
            self._follow()
            self._provenance()
        if request.since is not None:
            self._deleted()

    def _studies(self) -> Iterable[list[StoredResource]]:
        """The studies the export starts from, a page at a time (all of them, whatever ``_since``)."""
        study_filters = self.filters.get("ResearchStudy")
        if self.request.level == "ResearchStudy":
            yield from self.snapshot.pages("ResearchStudy", None, None, study_filters)
            return
        group = self.snapshot.read("Group", [self.request.group_id])
        if not group:
            raise LookupError(f"Group/{self.request.group_id} is not in the snapshot")
        listed = [rid for rtype, rid in references(group[0].json) if rtype == "ResearchStudy"]
        for ids in self.snapshot.pointing_at("ResearchStudy", "Group", self.request.group_id):
            listed.extend(ids)
        if listed:
            yield self.snapshot.read("ResearchStudy", listed, None, None, study_filters)

    def _reports(self) -> None:
        """The Compositions about the studies (``subject``: the results reports), and what they
        reference is noted to follow (their Evidence and Groups)."""
        if "Composition" not in self.served:
            return
        for found_ids in self.snapshot.pointing_at_wanted("Composition", "subject"):
            self._check()
            found = self.snapshot.read("Composition", found_ids, None, None, self.filters.get("Composition"))
            fresh = self.snapshot.unseen([(r.type, r.id) for r in found])
            found = [r for r in found if (r.type, r.id) in fresh]
            self.snapshot.want(((r.type, r.id) for r in found), done=True)
            self.snapshot.want(ref for r in found for ref in references(r.json))
            self._write([r for r in found if self._in_span(r)])

    def _follow(self) -> None:
        """Every resource the studies reference, and what those reference, to the end."""
        for keys in self.snapshot.wanted():
            self._check()
            for rtype in sorted({t for t, _ in keys}):
                found = self.snapshot.read(rtype, [i for t, i in keys if t == rtype], None, None,
                                           self.filters.get(rtype))
                self.snapshot.want(ref for r in found for ref in references(r.json))
                self._write([r for r in found if self._in_span(r)])
            self.progress(self.done, None)

    def _provenance(self, force: bool = False) -> None:
        """The Provenance whose target is a resource of the set (not yet written)."""
        if not force and self.types is not None and "Provenance" not in self.types:
            return
        for ids in self.snapshot.pointing_at_wanted("Provenance", "target"):
            self._check()
            found = self.snapshot.read("Provenance", ids, self.request.since, self.request.until,
                                       self.filters.get("Provenance"))
            fresh = self.snapshot.unseen([(r.type, r.id) for r in found])
            self._write([r for r in found if (r.type, r.id) in fresh], force=force)
            self.snapshot.want(fresh, done=True)

    def _deleted(self) -> None:
        types = [t for t in self.served if self.types is None or t in self.types]
        for rtype in types:
            for page in self.snapshot.deleted(rtype, self.request.since, self.request.until):
                self._check()
                for head in page:
                    self.files.write("Bundle", "deleted", orjson.dumps({
                        "resourceType": "Bundle", "type": "transaction", "entry": [
                            {"request": {"method": "DELETE", "url": f"{head.type}/{head.id}"}}]}))

    def _in_span(self, stored: StoredResource) -> bool:
        since, until = self.request.since, self.request.until
        return (since is None or stored.last_updated > since) and (until is None or stored.last_updated <= until)

    def _write(self, page: list[StoredResource], force: bool = False) -> None:
        for stored in page:
            if not force and self.types is not None and stored.type not in self.types:
                continue
            self.files.write(stored.type, "output", self._line(stored))
            self.done += 1

    def _line(self, stored: StoredResource) -> bytes:
        elements = self.request.elements
        if not elements:
            return stored.json
        mine = tuple(e.partition(".")[2] if "." in e else e for e in elements
                     if "." not in e or e.partition(".")[0] == stored.type)
        if not mine:
            return stored.json
        return orjson.dumps(subset(orjson.loads(stored.json), None, mine))

    def _check(self) -> None:
        if self.cancelled():
            raise Cancelled("the export was cancelled")


def references(stored: bytes) -> set[tuple[str, str]]:
    """``(type, id)`` of every literal local reference (``Location/abc``) in the stored JSON
    bytes ``stored``. Stored JSON is compact (orjson's), so a Reference's ``reference`` reads
    ``"reference":"Location/abc"``; a quote inside a string is escaped, so text cannot pass for one."""
    return {(m.group(1).decode(), m.group(2).decode()) for m in _REFERENCE_BYTES.finditer(stored)}


class _Files:
    """The NDJSON files of one export: per kind (output, error, deleted) and type, numbered parts
    of at most ``max_bytes`` each (a line longer than that has a part of its own)."""

    def __init__(self, directory: Path, max_bytes: int):
        self.directory, self.max_bytes = directory, max_bytes
        self._open: dict[tuple[str, str], tuple[BinaryIO, OutputFile, int]] = {}
        self._done: list[tuple[str, OutputFile]] = []
        self._parts: dict[tuple[str, str], int] = {}

    def write(self, rtype: str, kind: str, line: bytes) -> None:
        key = (kind, rtype)
        handle = self._open.get(key)
        if handle is not None and handle[2] and handle[2] + len(line) + 1 > self.max_bytes:
            self._finish(key)
            handle = None
        if handle is None:
            part = self._parts[key] = self._parts.get(key, 0) + 1
            prefix = "" if kind == "output" else f"{kind}-"
            name = f"{prefix}{rtype}-{part}.ndjson"
            handle = (open(self.directory / name, "wb"), OutputFile(rtype, name, 0), 0)
        f, listed, size = handle
        f.write(line)
        f.write(b"\n")
        listed.count += 1
        self._open[key] = (f, listed, size + len(line) + 1)

    def _finish(self, key: tuple[str, str]) -> None:
        f, listed, _ = self._open.pop(key)
        f.flush()
        os.fsync(f.fileno())   # a published manifest never points at bytes still in flight
        f.close()
        self._done.append((key[0], listed))

    def close(self) -> None:
        for key in list(self._open):
            self._finish(key)

    def listed(self, kind: str) -> list[OutputFile]:
        return sorted((f for k, f in self._done if k == kind),
                      key=lambda f: (f.type, int(f.name.rsplit("-", 1)[1].split(".")[0])))
