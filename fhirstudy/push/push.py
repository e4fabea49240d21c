"""The push run: trials (R5 resources, one list per trial) -> a FHIR store, once, in its version.

    report = push_trials(client, trials, journal=Journal("push.sqlite"))
    report.counts   -> {"created": 3, "updated": 1, "unchanged": 19, "failed": 0}

For each chunk of trials (a chunk never splits a trial):

1. **prepare**: down-convert to R4 when the store speaks R4 (:mod:`fhirstudy.mappers.r4`); give
   every resource a business identifier (the ResearchStudy keeps its registry identifier; the
   resources that hang off it get ``urn:fhirstudy:resource-id|<stable id>``); hash the content.
   A trial whose hash the journal already holds for this store is not sent at all.
2. **read**: search the store for the chunk's resources by identifier (one OR search per type and
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
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from urllib.parse import urlencode

from .. import terminology
from ..errors import AuthenticationFailed, PushError, RemoteRejected
from ..mappers import ids
from ..mappers.r4 import to_r4
from .client import FhirClient, outcome_text
from .journal import Journal

RESOURCE_ID_SYSTEM = "urn:fhirstudy:resource-id"
NO_IDENTIFIER = frozenset({"Provenance"})   # types with no identifier element (R4 and R5)
DEFAULT_CHUNK_TRIALS = 20
DEFAULT_CHUNK_ENTRIES = 1000   # entries per transaction at most (a bigger trial goes alone)
SEARCH_BATCH = 40              # identifiers per OR search
OUTCOMES = ("created", "updated", "unchanged", "failed")
REPLAN_STATUSES = (409, 412)


# ---------------------------------------------------------------------------------------------
# preparing a trial


@dataclass
class PreparedTrial:
    """A trial's resources in the store's FHIR version, with identifiers, and their hash."""

    id: str
    resources: list[dict]
    content_hash: str
    source: str | None = None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")


def business_identifier(resource: dict) -> dict | None:
    """The identifier a resource is matched by: the official one with a system, else the first with
    a system (the ResearchStudy's registry number; ``urn:fhirstudy:resource-id`` for the others)."""
    with_system = [i for i in resource.get("identifier", []) if i.get("system") and i.get("value")]
    return next((i for i in with_system if i.get("use") == "official"), with_system[0] if with_system else None)


def criteria(resource: dict) -> str | None:
    """``identifier=system|value`` of a resource (``_tag=urn:fhirstudy:resource-id|<id>`` for a
    type without identifiers), None when it has neither."""
    ident = business_identifier(resource)
    if ident:
        return f"identifier={_escape(ident['system'])}|{_escape(ident['value'])}"
    tag = next((t for t in (resource.get("meta") or {}).get("tag", []) if t.get("system") == RESOURCE_ID_SYSTEM), None)
    return f"_tag={_escape(tag['system'])}|{_escape(tag['code'])}" if tag else None


def with_identifiers(resources: list[dict]) -> list[dict]:
    """The resources, each with a business identifier (added where it has none with a system; a
    ``meta.tag`` for the types that have no identifier element)."""
    out = []
    for r in resources:
        if r["resourceType"] in NO_IDENTIFIER:
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


def prepare_trial(resources: list[dict], fhir_version: str, source: str | None = None) -> PreparedTrial:
    """A trial's R5 resources (ResearchStudy first) made ready for a store of ``fhir_version``."""
    converted = to_r4(resources) if fhir_version == "4.0" else orjson.loads(orjson.dumps(resources))  # a deep copy
    converted = with_identifiers(converted)
    return PreparedTrial(converted[0]["id"], converted, content_hash(converted, fhir_version), source)


# ---------------------------------------------------------------------------------------------
# results


@dataclass
class TrialResult:
    """What happened to one trial."""

    trial: str
    outcome: str                                    # created | updated | unchanged | failed
    resources: dict[str, int] = field(default_factory=dict)   # created/updated/unchanged counts
    server_ids: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    operation_outcome: dict | None = None
    status: int | None = None
    from_journal: bool = False
    source: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}, False)}


@dataclass
class PushReport:
    """The run's results, trial by trial, and its totals."""

    target: str
    fhir_version: str
    dry_run: bool = False
    trials: list[TrialResult] = field(default_factory=list)
    seconds: float = 0.0
    transactions: int = 0
    ids_kept: bool = False              # the store took our ids (client ids) rather than picking its own
    stopped: str | None = None          # why the run stopped early (an authentication failure)

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(t.outcome for t in self.trials)
        return {k: c.get(k, 0) for k in OUTCOMES}

    @property
    def resources(self) -> dict[str, int]:
        c: Counter[str] = Counter()
        for t in self.trials:
            c.update(t.resources)
        return {k: c.get(k, 0) for k in ("created", "updated", "unchanged")}

    def to_dict(self) -> dict:
        sent = self.resources["created"] + self.resources["updated"]
        return {"target": self.target, "fhirVersion": self.fhir_version, "dryRun": self.dry_run,
                "counts": self.counts, "resources": self.resources, "transactions": self.transactions,
                "seconds": round(self.seconds, 3), "idsKept": self.ids_kept,
                **({"stopped": self.stopped} if self.stopped else {}),
                "resourcesPerSecond": round(sent / self.seconds, 1) if self.seconds else None,
                "trials": [t.to_dict() for t in self.trials]}


# ---------------------------------------------------------------------------------------------
# reading what the store holds, planning a transaction


_Key = tuple[str, str]  # (resourceType, our stable id)


def _key(r: dict) -> _Key:
    return r["resourceType"], r["id"]


def read_existing(client: FhirClient, trials: list[PreparedTrial]) -> dict[_Key, dict]:
    """What the store holds for the trials' resources, found by business identifier (by the
    ``urn:fhirstudy:resource-id`` tag for types without identifiers)."""
    wanted: dict[tuple[str, str], dict[str, _Key]] = {}   # (type, parameter) -> token -> key
    for trial in trials:
        for r in trial.resources:
            crit = criteria(r)
            if crit is not None:
                param, token = crit.split("=", 1)
                wanted.setdefault((r["resourceType"], param), {})[token] = _key(r)
    found: dict[_Key, dict] = {}
    if getattr(client, "_batch_search", True):
        try:
            return _read_by_batch(client, wanted)
        except RemoteRejected:  # the store answers no searches in a batch: OR searches per type
            client._batch_search = False
    for (rtype, param), tokens in wanted.items():
        values = list(tokens)
        for i in range(0, len(values), SEARCH_BATCH):
            part = values[i:i + SEARCH_BATCH]
            for stored in client.search(rtype, {param: ",".join(part), "_count": str(len(part) * 2)}):
                held = (stored.get("identifier", []) if param == "identifier" else
                        [{"system": t.get("system"), "value": t.get("code")} for t in (stored.get("meta") or {}).get("tag", [])])
                for ident in held:
                    token = f"{_escape(ident.get('system') or '')}|{_escape(ident.get('value') or '')}"
                    if token in tokens:
                        found[tokens[token]] = stored
    return found


def _read_by_batch(client: FhirClient, wanted: dict[tuple[str, str], dict[str, _Key]]) -> dict[_Key, dict]:
    """One batch of single-value searches (a store indexes ``identifier=x`` better than ``x,y,z``)."""
    order = [(rtype, param, token) for (rtype, param), tokens in wanted.items() for token in tokens]
    if not order:
        return {}
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"{rtype}?{urlencode({param: token})}"}} for rtype, param, token in order]}
    response = client.transaction(bundle)
    found: dict[_Key, dict] = {}
    for (rtype, param, token), entry in zip(order, response.get("entry", []), strict=True):
        status = str((entry.get("response") or {}).get("status", ""))
        if not status.startswith("2"):
            raise RemoteRejected(f"batch search {rtype}?{param}={token}: {status}", url=client.base_url,
                                 status=int(status.split()[0]) if status[:3].isdigit() else 400,
                                 outcome=(entry.get("response") or {}).get("outcome"))
        matches = [e["resource"] for e in (entry.get("resource") or {}).get("entry", []) if "resource" in e]
        if matches:
            found[wanted[(rtype, param)][token]] = matches[0]
    return found


def _rewrite(node: Any, refs: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: (refs.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, refs))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, refs) for v in node]
    return node


def _comparable(resource: dict) -> dict:
    """A resource without what a server adds on write (meta.versionId, meta.lastUpdated)."""
    body = dict(resource)
    meta = {k: v for k, v in (body.pop("meta", None) or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        body["meta"] = meta
    return body


def same_content(stored: dict, wanted: dict) -> bool:
    """Whether the store already holds ``wanted`` (server-kept meta aside)."""
    a, b = _comparable(stored), _comparable(wanted)
    src_a, src_b = (a.get("meta") or {}).get("source"), (b.get("meta") or {}).get("source")
    if src_a and src_b and src_a != src_b and src_a.startswith(src_b):  # a store that appends #request-id
        a["meta"] = {**a["meta"], "source": src_b}
    return a == b


@dataclass
class _Plan:
    trial: PreparedTrial
    entries: list[dict]
    sent: list[tuple[_Key, str]]            # (key, "created" | "updated") per entry, in order
    unchanged: list[_Key]
    server_ids: dict[str, str]


def plan_trial(trial: PreparedTrial, found: dict[_Key, dict], conditional: bool = True,
               client_ids: bool = False) -> _Plan:
    """The transaction entries that bring the store to ``trial`` (nothing for what it holds);
    ``client_ids``: new resources keep our ids (conditional update) instead of store-picked ones."""
    server_id = {k: found[k]["id"] for k in (_key(r) for r in trial.resources) if k in found}
    settled = {f"{t}/{i}": f"{t}/{server_id.get((t, i), i)}" for t, i in (_key(r) for r in trial.resources)}
    changed: list[dict] = []
    unchanged: list[_Key] = []
    for r in trial.resources:
        key = _key(r)
        if key in found and same_content(found[key], _rewrite({**r, "id": server_id[key]}, settled)):
            unchanged.append(key)
        else:
            changed.append(r)
    through_urn = {f"{r['resourceType']}/{r['id']}": ids.full_url(*_key(r)) for r in changed}
    refs = {**settled, **through_urn}
    entries, sent = [], []
    for r in changed:
        key = _key(r)
        body = _rewrite(r, refs)
        stored = found.get(key)
        crit = criteria(r)
        entry: dict = {"fullUrl": ids.full_url(*key)}
        if stored is not None:
            body["id"] = stored["id"]
            version = (stored.get("meta") or {}).get("versionId")
            url = f"{key[0]}?{crit}" if conditional and crit else f"{key[0]}/{stored['id']}"
            entry["request"] = {"method": "PUT", "url": url, **({"ifMatch": f'W/"{version}"'} if version else {})}
            sent.append((key, "updated"))
        elif conditional and crit and client_ids:  # update-as-create with our id, matched by identifier
            entry["request"] = {"method": "PUT", "url": f"{key[0]}?{crit}"}
            sent.append((key, "created"))
        elif conditional and crit:
            body.pop("id", None)
            entry["request"] = {"method": "POST", "url": key[0], "ifNoneExist": crit}
            sent.append((key, "created"))
        else:  # no conditional support: PUT by our stable id
            entry["request"] = {"method": "PUT", "url": f"{key[0]}/{key[1]}"}
            sent.append((key, "created"))
        entry["resource"] = body
        entries.append(entry)
    ids_now = {f"{t}/{i}": f"{t}/{sid}" for (t, i), sid in server_id.items()}
    return _Plan(trial, entries, sent, unchanged, ids_now)


def _location_id(location: str | None) -> str | None:
    """``Type/id`` from a response location (absolute or relative, with or without _history)."""
    if not location:
        return None
    parts = location.split("?")[0].rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[:parts.index("_history")]
    return "/".join(parts[-2:]) if len(parts) >= 2 else None


# ---------------------------------------------------------------------------------------------
# the run


class Pusher:
    """One push run into ``client``'s store (see the module docstring)."""

    def __init__(self, client: FhirClient, fhir_version: str | None = None, journal: Journal | None = None,
                 dry_run: bool = False, chunk_trials: int = DEFAULT_CHUNK_TRIALS,
                 chunk_entries: int = DEFAULT_CHUNK_ENTRIES, conditional: bool | None = None,
                 client_ids: bool | None = None, on_trial: Callable[[TrialResult], None] | None = None,
                 after_chunk: Callable[[list[TrialResult]], None] | None = None):
        self.client = client
        self.fhir_version = fhir_version or client.fhir_version()
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
                                 ids_kept=client_ids or not self.conditional)
        self._lock = threading.Lock()
        self._stop = threading.Event()

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
                                       known.server_ids, from_journal=True, source=trial.source))
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
                           status=getattr(exc, "status", None), source=trial.source)

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
                                 source=plan.trial.source)
            if self.journal:
                self.journal.record(self.client.base_url, plan.trial.id, plan.trial.content_hash,
                                    self.fhir_version, server_ids, "created")
            results.append(result)
        if existing:
            results += self._send(existing, replan=True, client_ids=client_ids)
        order = {t.id: n for n, t in enumerate(chunk)}
        return sorted(results, key=lambda r: order[r.trial])

    def _send(self, chunk: list[PreparedTrial], replan: bool, client_ids: bool = False) -> list[TrialResult]:
        found = read_existing(self.client, chunk)
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
                                 source=plan.trial.source)
            if self.journal and not self.dry_run:
                self.journal.record(self.client.base_url, plan.trial.id, plan.trial.content_hash,
                                    self.fhir_version, server_ids, outcome)
            results.append(result)
        return results

    def run(self, trials: Iterable[list[dict]], jobs: int = 1) -> PushReport:
        """Push every trial (its R5 resources, ResearchStudy first); the report. AuthenticationFailed
        stops the run at the first refusal (``self.report`` holds what was done and why it stopped)."""
        started = time.perf_counter()
        prepared = (prepare_trial(t, self.fhir_version) for t in trials)
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


def bundle_resources(bundle: dict) -> list[dict]:
    """The resources of a transaction Bundle made by ``fhirstudy convert`` (ResearchStudy first)."""
    return [e["resource"] for e in bundle.get("entry", [])]
