"""The :class:`Importer`: FHIR documents into the store, through the server's write processor.

Each entry is prepared as a REST write is (:func:`fhirstudy.server.transaction.prepare`: a served
type, the id agreeing with the URL, :func:`fhirstudy.validation.validate_resource`, a new id for a
POST, its ``urn:uuid`` fullUrl mapped); one that fails is reported with its place and left out.
Then the entries go to the store in transactions:

- a transaction Bundle in ONE transaction, all or nothing (any failing entry fails it);
- every other entry in groups of :data:`GROUP_SIZE` (consecutive NDJSON lines and single
  resources; the entries of one batch, collection or searchset Bundle), each group one
  transaction.  When the database refuses a group, the entry it names is reported and the rest is
  written again; past :data:`MAX_DROPS` such entries, or when no entry is named, the group is
  written one entry at a time, so one bad line costs only itself.

A DELETE of a resource the store never held is a warning and left out (the state it asks for is
there already: a Bulk export's ``deleted`` file loaded into another store), not a failure.

Plain creates and updates (no criteria, no ``If-Match``) take the load's fast way: references
rewritten and index rows computed before the transaction begins (``SqlStore.prepare``), the
transaction writing rows only; anything else (deletes, conditional writes) is run by
:func:`fhirstudy.server.bundle.run_transaction`, exactly as the server runs a transaction Bundle.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from fhirstudy.errors import (BundleEntryFailed, FhirError, FhirStudyError, InvalidRequest, NotFound, Problem,
                              StoreError, ValidationFailed)
from fhirstudy.importer.entries import Entry, Unit, unit_of
from fhirstudy.server.bundle import PROCESSING_ORDER, run_transaction
from fhirstudy.server.transaction import prepare, rewrite_references
from fhirstudy.sources._boundary import failure_reason

GROUP_SIZE = 200  # independent entries written in one transaction
MAX_DROPS = 3  # entries a group's transaction may refuse one by one before it is written entry by entry
REQUEST_EXPRESSIONS = ("If-Match", "If-None-Exist", "criteria")  # where resolve/execute point at the request


class Importer:
    """Store FHIR documents (``fhirstudy.sources.FhirDocument``) given to :meth:`add`; call
    :meth:`flush` at the end.  Problems go to ``report`` as they are found; the counts are
    ``stored`` (resources created, updated or unchanged), ``deleted``, ``failed`` (entries or
    documents not stored), ``warnings`` and ``refused_in_a_row`` (writes the database refused
    since the last one it took).  Once ``max_refused`` writes in a row were refused, ``stopped`` is
    true and nothing more is written."""

    def __init__(self, store, report: Callable[[Problem], None], max_refused: int | None = None):
        self.store = store
        self.report = report
        self.max_refused = max_refused
        self.documents = self.stored = self.deleted = self.failed = self.warnings = 0
        self.refused_in_a_row = 0
        self.stopped = False
        self._pending: list[Entry] = []  # prepared entries of resources on their own (no refs)

    def add(self, document) -> None:
        """Prepare the writes of one document; write what is ready."""
        if self.stopped:
            return
        self.documents += 1
        if document.data is None:
            self._fail(list(document.problems), 1)
            return
        try:
            unit = unit_of(document.file, document.record, document.ndjson, document.data)
        except Exception as exc:  # noqa: BLE001 - the boundary of one document
            self._fail([Problem(_failure(exc), file=document.file, record=document.record)], 1)
            return
        for warning in unit.warnings:
            self.warnings += 1
            self.report(warning)
        self._fail(unit.problems, len(unit.problems))
        entries, failed = self._prepare(unit)
        if unit.atomic:
            self.flush()
            if unit.problems or failed:
                self._unit_failed(unit, len(unit.entries), "an entry failed")
            elif entries:
                self._write(entries, unit)
        elif unit.refs is None:
            self._pending.extend(entries)
            if len(self._pending) >= GROUP_SIZE:
                self.flush()
        else:
            self.flush()
            for start in range(0, len(entries), GROUP_SIZE):
                self._write(entries[start:start + GROUP_SIZE], unit)

    def flush(self) -> None:
        """Write the resources still waiting for their group."""
        pending, self._pending = self._pending, []
        if pending:
            self._write(pending, Unit(pending[0].file, None))

    # -- the steps ----------------------------------------------------------------------------

    def _prepare(self, unit: Unit) -> tuple[list[Entry], int]:
        """The unit's entries prepared (checked, validated, POST ids given), and how many failed."""
        ready, failed = [], 0
        for entry in unit.entries:
            try:
                request = prepare(entry.request, self.store.registry, unit.refs)
            except Exception as exc:  # noqa: BLE001 - the boundary of one entry
                failed += 1
                self._fail(problems_of(entry, exc), 0 if unit.atomic else 1)
                continue
            ready.append(dataclasses.replace(entry, request=request))
        return ready, failed

    def _write(self, entries: list[Entry], unit: Unit) -> None:
        """Write ``entries`` in one transaction; failures as the module docstring says."""
        drops = 0
        while entries and not self.stopped:
            try:
                self._transaction(entries, unit.refs, unit.atomic)
            except Exception as exc:  # noqa: BLE001 - the boundary of one transaction
                self.refused_in_a_row += _refused(exc)
                self.stopped = bool(self.max_refused and self.refused_in_a_row >= self.max_refused)
                named = isinstance(exc, BundleEntryFailed) and 0 <= exc.index < len(entries)
                if named and _nothing_to_delete(entries[exc.index], exc):  # the state asked for is there
                    self._nothing_deleted(entries[exc.index])
                    entries = entries[:exc.index] + entries[exc.index + 1:]
                    continue
                if unit.atomic:
                    self._fail(problems_of(entries[exc.index], exc) if named else
                               [Problem(_failure(exc), file=unit.file, record=unit.record)], 0)
                    self._unit_failed(unit, len(entries), "the database refused it")
                    return
                if named and drops < MAX_DROPS:
                    drops += 1
                    self._fail(problems_of(entries[exc.index], exc), 1)
                    entries = entries[:exc.index] + entries[exc.index + 1:]
                    continue
                if len(entries) == 1:
                    self._fail(problems_of(entries[0], exc), 1)
                    return
                for entry in entries:
                    self._write([entry], unit)  # stops at once when the database refuses too many
                return
            self.refused_in_a_row = 0
            deleted = sum(e.request.method == "DELETE" for e in entries)
            self.deleted += deleted
            self.stored += len(entries) - deleted
            return

    def _transaction(self, entries: list[Entry], refs: dict[str, str] | None, atomic: bool) -> None:
        requests = sorted((dataclasses.replace(e.request, index=k) for k, e in enumerate(entries)),
                          key=lambda r: (PROCESSING_ORDER[r.method], r.index))
        if not all(_plain(r) for r in requests):
            # a transaction works on its own copy of the map (run again after a lost race); a
            # group of independent entries shares its Bundle's, as the server's batch does
            own = atomic and refs is not None
            self.store.write(lambda tx: run_transaction(tx, requests, dict(refs) if own else refs))
            return
        if atomic:
            seen: set[tuple] = set()
            for r in requests:
                if (r.rtype, r.rid) in seen:
                    raise BundleEntryFailed(r.index, InvalidRequest(f"{r.rtype}/{r.rid} is the target of more "
                                                                    "than one entry"), f"({r.label})")
                seen.add((r.rtype, r.rid))
        by_method: dict[str, list[dict]] = {"POST": [], "PUT": []}
        for r in requests:
            try:
                resource = rewrite_references(r.resource, refs) if refs is not None else r.resource
            except FhirStudyError as exc:
                raise BundleEntryFailed(r.index, exc, f"({r.label})") from exc
            by_method[r.method].append(resource)
        prepared = {method: self.store.prepare(resources) for method, resources in by_method.items() if resources}
        self.store.write(lambda tx: [tx.put_prepared(p, method) for method, p in prepared.items()])

    # -- reporting ----------------------------------------------------------------------------

    def _fail(self, problems: list[Problem], count: int) -> None:
        for problem in problems:
            self.report(problem)
        self.failed += count

    def _nothing_deleted(self, entry: Entry) -> None:
        request = entry.request
        self.warnings += 1
        self.report(Problem(f"nothing to delete: {request.rtype}/{request.rid} is not stored",
                            f"{entry.where}.request" if entry.where else None, entry.file, entry.record, "warning"))

    def _unit_failed(self, unit: Unit, writes: int, why: str) -> None:
        """A transaction Bundle not stored: one line for it; its ``writes`` count as failed (its
        entries that are not writes were counted when they were reported)."""
        self.report(Problem(f"the transaction Bundle is not stored ({why}; all or nothing): "
                            f"{writes + len(unit.problems)} entries not loaded", "Bundle", unit.file, unit.record))
        self.failed += writes


def _plain(request) -> bool:
    """A create or update by id, with no criteria and no precondition: the fast way."""
    return (request.method in ("PUT", "POST") and not request.criteria and request.if_match is None
            and not request.if_none_exist and request.rid is not None)


def _nothing_to_delete(entry: Entry, exc: BaseException) -> bool:
    """A DELETE of what was never stored (a Bulk export's deleted file, loaded into another store)."""
    return entry.request.method == "DELETE" and type(_cause(exc)) is NotFound


def _refused(exc: BaseException) -> bool:
    """Whether the database refused a write (not the write's own mistake)."""
    cause = _cause(exc)
    return isinstance(cause, StoreError) and not isinstance(cause, InvalidRequest)


def _cause(exc: BaseException) -> BaseException:
    return exc.cause if isinstance(exc, BundleEntryFailed) else exc


def _failure(exc: BaseException) -> str:
    exc = _cause(exc)
    if isinstance(exc, StoreError):
        return f"not stored: {exc}"
    if isinstance(exc, FhirStudyError):
        return str(exc)
    return failure_reason(exc, "storing")


def problems_of(entry: Entry, exc: BaseException) -> list[Problem]:
    """What went wrong with ``entry``, one Problem per issue, each placed in the document."""
    cause = _cause(exc)
    if isinstance(cause, ValidationFailed):
        issues = [(i.reason, i.field) for i in cause.issues]
    elif isinstance(cause, FhirError) and not isinstance(cause, StoreError):
        issues = [(cause.diagnostics, cause.expression)]
    else:
        issues = [(_failure(cause), None)]
    return [Problem(reason, _field(entry, where), entry.file, entry.record) for reason, where in issues]


def _field(entry: Entry, where: str | None) -> str | None:
    """``where`` inside the document: a resource's path under its Bundle entry."""
    if entry.where is None or where is None or where.startswith("Bundle."):
        return where or entry.where
    if where in REQUEST_EXPRESSIONS:
        return f"{entry.where}.request"
    rtype = entry.request.rtype
    if where == rtype or where.startswith(rtype + "."):
        return f"{entry.where}.resource{where[len(rtype):]}"
    return f"{entry.where}.resource.{where}"
