"""The push run: trials (R5 resources, one list per trial) -> a FHIR store, once, in its version.

    report = push_trials(client, trials, journal=Journal("push.sqlite"))
    report.counts   -> {"created": 3, "updated": 1, "unchanged": 19, "failed": 0}

For each chunk of trials (a chunk never splits a trial):

1. **prepare**: down-convert to R4 when the store speaks R4 (:mod:`fhirstudy.mappers.r4`; the
   results left out, or sent in cross-version extensions with ``r4_results="extensions"``); keep
   every resource's narrative (``text``; ``narrative=False``, ``push --no-narrative``, sends none); give
   every resource a business identifier (the ResearchStudy keeps its registry identifier; the
   resources that hang off it get ``urn:fhirstudy:resource-id|<stable id>``); hash the content.
   A trial whose hash the journal already holds for this store is not sent at all.
2. **read**: search the store for the chunk's resources by identifier (one batch of single searches,
   :meth:`FhirClient.batch_search`, while the store answers them, else one OR search per type and
   40 identifiers; Provenance, which has no identifier element, by a ``meta.tag`` we give it).
3. **plan**: a resource whose stored content equals what we would send (ignoring versionId and
   lastUpdated) is left out, so an unchanged trial gets no new version even without a journal;
   a new one is ``POST`` with ``ifNoneExist: identifier=...`` (the store picks its id) or, where
   the store takes client ids, ``PUT Type?identifier=...`` with our id in the body (it keeps the
   converted id, ``ResearchStudy/nct06731140``); a changed one is ``PUT Type?identifier=...`` with
   ``ifMatch`` the version read. Where the store offers no conditional operations the entries
   are ``PUT Type/id`` with the ids the search found (search-then-PUT).
   References between a trial's resources go through the entries' ``urn:uuid`` fullUrls.

   Client ids are used where the CapabilityStatement says ``updateCreate`` and ``versioned-update``
   (:meth:`FhirClient.takes_client_ids`: fhirstudy, HAPI FHIR) or where the caller asks for them;
   a store that refuses them anyway (the Medplum engine answers "Cannot provide ID for create by
   update" to a conditional update that carries an id) refuses the chunk, which is then sent with
   store-picked ids, and so is the rest of the run. The conditional update is as safe to repeat
   as ``ifNoneExist`` on such a store: a replay matches by identifier and writes the same
   content, which keeps its version. Unlike ``ifNoneExist`` it also overwrites a stored copy
   with other content, so a trial the journal does not know, held with other content under our
   ids, is brought up to date by the first transaction and reported ``unchanged`` (no version
   is compared); with ``--resume`` a known trial is read and compared first, as before.
4. **send** the chunk as ONE transaction (safe to repeat: a replay matches ``ifNoneExist`` and
   fails ``ifMatch``). 409/412 (someone else, or a replay, wrote first): read and plan again once.
   A 4xx for a chunk of several trials: each trial is sent alone, so only the bad one fails,
   with the store's OperationOutcome; the run goes on. A 401/403 stops the run at once
   (:class:`~fhirstudy.errors.AuthenticationFailed`, with the report so far in ``Pusher.report``):
   every other request would be refused the same way.
5. **journal** each committed trial (hash, server ids).

The rooms: :mod:`.prepare` (step 1), :mod:`.plan` (steps 2 and 3), :mod:`.report` (results), this
module (the run: chunks, sending, retries, journal).
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from .. import terminology
from ..errors import AuthenticationFailed, PushError, RemoteRejected
from .client import FhirClient, outcome_text
from .journal import Journal
from .plan import (SEARCH_BATCH, _location_id, plan_trial, read_by_batch, read_by_search,  # noqa: F401
                   read_existing, same_content, wanted_tokens)
from .prepare import (NO_IDENTIFIER, RESOURCE_ID_SYSTEM, PreparedTrial, bundle_resources,  # noqa: F401
                      business_identifier, content_hash, criteria, prepare_trial, with_identifiers)
from .report import OUTCOMES, PushReport, TrialResult  # noqa: F401

DEFAULT_CHUNK_TRIALS = 20
DEFAULT_CHUNK_ENTRIES = 1000   # entries per transaction at most (a bigger trial goes alone)
REPLAN_STATUSES = (409, 412)


class Pusher:
    """One push run into ``client``'s store (see the module docstring)."""

    def __init__(self, client: FhirClient, fhir_version: str | None = None, journal: Journal | None = None,
                 dry_run: bool = False, chunk_trials: int = DEFAULT_CHUNK_TRIALS,
                 chunk_entries: int = DEFAULT_CHUNK_ENTRIES, conditional: bool | None = None,
                 client_ids: bool | None = None, on_trial: Callable[[TrialResult], None] | None = None,
                 after_chunk: Callable[[list[TrialResult]], None] | None = None, r4_results: str = "omit",
                 narrative: bool = True):
        self.client = client
        self.narrative = narrative  # False: send every resource without its text (push --no-narrative)
        self.fhir_version = fhir_version or client.fhir_version()
        self.r4_results = r4_results  # what an R4 store gets of the results: "omit" or "extensions"
        self.journal = journal
        self.dry_run = dry_run
        self.chunk_trials = chunk_trials
        self.chunk_entries = chunk_entries
        self.conditional = client.supports_conditional("ResearchStudy") if conditional is None else conditional
        if client_ids is None:
            client_ids = self.conditional and client.takes_client_ids("ResearchStudy")
        self.client_ids = client_ids
        self.on_trial = on_trial
        self.after_chunk = after_chunk
        self.report = PushReport(client.base_url, self.fhir_version, dry_run,
                                 ids_kept=client_ids or not self.conditional,
                                 r4_results=r4_results if self.fhir_version == "4.0" else None)
        # whether the store answers searches inside a batch: None until tried, then what it did
        self.batch_search: bool | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def read_existing(self, chunk: list[PreparedTrial]) -> dict:
        """What the store holds for the chunk's resources: one batch of searches while the store
        takes them (tried once, honestly: a store may not), else OR searches per type."""
        wanted = wanted_tokens(chunk)
        if self.batch_search is not False and wanted:
            try:
                found = read_by_batch(self.client, wanted)
            except RemoteRejected:  # the store answers no searches in a batch: OR searches from now on
                self.batch_search = False
            else:
                self.batch_search = True
                return found
        return read_by_search(self.client, wanted)

    # -- results
    def _done(self, result: TrialResult) -> None:
        with self._lock:
            self.report.trials.append(result)
        if self.on_trial:
            self.on_trial(result)

    # -- chunks
    def chunks(self, trials: Iterable[PreparedTrial]) -> Iterator[list[PreparedTrial]]:
        """Chunks of trials to send, never splitting one; journal-unchanged trials are reported
        here and not sent."""
        chunk: list[PreparedTrial] = []
        size = 0
        for trial in trials:
            known = self.journal.get(self.client.base_url, trial.id) if self.journal else None
            if known and known.content_hash == trial.content_hash and known.fhir_version == self.fhir_version:
                self._done(TrialResult(trial.id, "unchanged", {"unchanged": len(trial.resources)},
                                       known.server_ids, from_journal=True, source=trial.source,
                                       note=trial.note))
                continue
            if chunk and (len(chunk) >= self.chunk_trials or size + len(trial.resources) > self.chunk_entries):
                yield chunk
                chunk, size = [], 0
            chunk.append(trial)
            size += len(trial.resources)
        if chunk:
            yield chunk

    def push_chunk(self, chunk: list[PreparedTrial]) -> list[TrialResult]:
        """Read, plan and send one chunk; every trial of it gets a result (none once the run was
        stopped). AuthenticationFailed stops the run."""
        if self._stop.is_set():
            return []
        try:
            results = self._attempt_modes(chunk)
        except AuthenticationFailed:
            self._stop.set()
            raise
        except RemoteRejected as exc:
            if len(chunk) > 1:  # find the trial the store refused: each alone
                results = [r for t in chunk for r in self.push_chunk([t])]
                return results
            results = [self._failed(chunk[0], exc)]
        except PushError as exc:
            results = [self._failed(t, exc) for t in chunk]
        for r in results:
            self._done(r)
        if self.after_chunk:
            self.after_chunk(results)
        return results

    def _failed(self, trial: PreparedTrial, exc: PushError) -> TrialResult:
        outcome = getattr(exc, "outcome", None)
        return TrialResult(trial.id, "failed", error=outcome_text(outcome) or str(exc), operation_outcome=outcome,
                           status=getattr(exc, "status", None), source=trial.source, note=trial.note)

    def _attempt_modes(self, chunk: list[PreparedTrial]) -> list[TrialResult]:
        """The chunk with client ids (when tried), else with store-picked ids; a store that takes
        the second after refusing the first gets store-picked ids from now on. RemoteRejected
        (the client-id one) when both are refused."""
        client_ids = self.client_ids
        try:
            return self._attempt(chunk, client_ids)
        except RemoteRejected as refused:
            if not client_ids:
                raise
            try:
                results = self._attempt(chunk, False)
            except RemoteRejected:
                raise refused from None
        with self._lock:
            self.client_ids = False
            self.report.ids_kept = False
        return results

    def _attempt(self, chunk: list[PreparedTrial], client_ids: bool) -> list[TrialResult]:
        if self._may_be_new(chunk):
            try:
                return self._send_new(chunk, client_ids)
            except RemoteRejected:
                if not client_ids:
                    raise
                # some resources are held under other ids (an earlier push): read first
        return self._send(chunk, replan=True, client_ids=client_ids)

    def _may_be_new(self, chunk: list[PreparedTrial]) -> bool:
        """Whether to try the chunk as creates first: the journal has never seen its trials (or
        there is no journal), the store takes conditional creates, and this is not a dry run."""
        if self.dry_run or not self.conditional:
            return False
        return self.journal is None or all(self.journal.get(self.client.base_url, t.id) is None for t in chunk)

    def _send_new(self, chunk: list[PreparedTrial], client_ids: bool = False) -> list[TrialResult]:
        """Send the chunk as conditional creates without reading first (``ifNoneExist``: what the
        store already holds is left as it is, so this is safe to repeat). A trial whose every
        resource was created is done; one that met existing resources is then reconciled by the
        careful path (read, compare, update what differs)."""
        plans = [plan_trial(t, {}, True, client_ids) for t in chunk]
        entries = [e for p in plans for e in p.entries]
        response = self.client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        with self._lock:
            self.report.transactions += 1
        response_entries = response.get("entry", [])
        if len(response_entries) != len(entries):
            return self._send(chunk, replan=True, client_ids=client_ids)
        results, at, existing = [], 0, []
        for plan in plans:
            answers = response_entries[at:at + len(plan.entries)]
            at += len(plan.entries)
            statuses = [str((a.get("response") or {}).get("status", "")).split(" ")[0] for a in answers]
            if any(st != "201" for st in statuses):
                existing.append(plan.trial)
                continue
            server_ids = {f"{k[0]}/{k[1]}": located for (k, _), a in zip(plan.sent, answers)
                          if (located := _location_id((a.get("response") or {}).get("location")))}
            result = TrialResult(plan.trial.id, "created", {"created": len(plan.sent)}, server_ids,
                                 source=plan.trial.source, note=plan.trial.note)
            if self.journal:
                self.journal.record(self.client.base_url, plan.trial.id, plan.trial.content_hash,
                                    self.fhir_version, server_ids, "created")
            results.append(result)
        if existing:
            results += self._send(existing, replan=True, client_ids=client_ids)
        order = {t.id: n for n, t in enumerate(chunk)}
        return sorted(results, key=lambda r: order[r.trial])

    def _send(self, chunk: list[PreparedTrial], replan: bool, client_ids: bool = False) -> list[TrialResult]:
        found = self.read_existing(chunk)
        plans = [plan_trial(t, found, self.conditional, client_ids) for t in chunk]
        entries = [e for p in plans for e in p.entries]
        response_entries: list[dict] = []
        if entries and not self.dry_run:
            try:
                response = self.client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
            except RemoteRejected as exc:
                if replan and exc.status in REPLAN_STATUSES:
                    return self._send(chunk, replan=False, client_ids=client_ids)
                raise
            with self._lock:
                self.report.transactions += 1
            response_entries = response.get("entry", [])
        results = []
        at = 0
        for plan in plans:
            counts: Counter[str] = Counter(unchanged=len(plan.unchanged))
            server_ids = dict(plan.server_ids)
            for key, what in plan.sent:
                counts[what] += 1
                if response_entries:
                    located = _location_id((response_entries[at].get("response") or {}).get("location"))
                    if located:
                        server_ids[f"{key[0]}/{key[1]}"] = located
                at += 1
            study = (plan.trial.resources[0]["resourceType"], plan.trial.resources[0]["id"])
            outcome = ("unchanged" if not plan.sent else
                       "created" if any(k == study and w == "created" for k, w in plan.sent) else "updated")
            result = TrialResult(plan.trial.id, outcome, {k: v for k, v in counts.items() if v}, server_ids,
                                 source=plan.trial.source, note=plan.trial.note)
            if self.journal and not self.dry_run:
                self.journal.record(self.client.base_url, plan.trial.id, plan.trial.content_hash,
                                    self.fhir_version, server_ids, outcome)
            results.append(result)
        return results

    def run(self, trials: Iterable[list[dict]], jobs: int = 1) -> PushReport:
        """Push every trial (its R5 resources, ResearchStudy first); the report. AuthenticationFailed
        stops the run at the first refusal (``self.report`` holds what was done and why it stopped)."""
        started = time.perf_counter()
        prepared = (prepare_trial(t, self.fhir_version, r4_results=self.r4_results, narrative=self.narrative)
                    for t in trials)
        try:
            if jobs <= 1:
                for chunk in self.chunks(prepared):
                    self.push_chunk(chunk)
            else:
                self._run_parallel(prepared, jobs)
        except AuthenticationFailed as exc:
            self.report.stopped = str(exc)
            raise
        finally:
            self.report.seconds = time.perf_counter() - started
        return self.report

    def _run_parallel(self, prepared: Iterable[PreparedTrial], jobs: int) -> None:
        with ThreadPoolExecutor(jobs) as pool:
            try:
                pending = []
                for chunk in self.chunks(prepared):
                    pending.append(pool.submit(self.push_chunk, chunk))
                    if len(pending) >= jobs * 2:
                        pending.pop(0).result()
                for f in pending:
                    f.result()
            except BaseException:
                self._stop.set()
                pool.shutdown(cancel_futures=True)
                raise


def push_trials(client: FhirClient, trials: Iterable[list[dict]], *, fhir_version: str | None = None,
                journal: Journal | None = None, dry_run: bool = False, jobs: int = 1, **options) -> PushReport:
    """Push trials (each a list of R5 resources, the ResearchStudy first) to ``client``'s store in
    its FHIR version (``fhir_version`` "4.0"/"5.0" overrides /metadata); the report."""
    return Pusher(client, fhir_version, journal, dry_run, **options).run(trials, jobs=jobs)


def install_search_parameters(client: FhirClient, fhir_version: str | None = None) -> list[str]:
    """Send the SearchParameters a store of this FHIR version lacks for fhirstudy's searches (R4:
    ResearchStudy ``condition``), each once (conditional on its url); the urls installed."""
    version = fhir_version or client.fhir_version()
    installed = []
    for sp in terminology.load_mapping("r5-to-r4.json").get("searchParameters", {}).get(version, []):
        if client.search("SearchParameter", {"url": sp["url"]}):
            continue
        client.json("POST", "SearchParameter", sp, headers={"If-None-Exist": f"url={sp['url']}"})
        installed.append(sp["url"])
    return installed
