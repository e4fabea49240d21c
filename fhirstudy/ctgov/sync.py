"""One sync of a query: ClinicalTrials.gov -> the pipeline -> the store (-> push targets), asking
only for what changed since the last run, remembering it all in :mod:`.state`.

A run of a query is one of:

- ``first`` (nothing remembered): every study of the query, each stored; they become its members.
- ``update``: ``/version`` first; when its ``dataTimestamp`` is the one of the last run, nothing
  changed and nothing more is asked (1 request). Otherwise the studies whose
  ``LastUpdatePostDate`` is on or after the latest seen, less :data:`OVERLAP_DAYS` (a study
  posted late on that day is not missed), each stored (unchanged content keeps its version).
- ``full`` (``--full``, or the last full check older than ``full_every_days``): an update, then
  the NCT ids of the whole query (``fields=NCTId``, 1,000 a request). A member no longer listed
  is asked for by id: absent from the registry it is ``gone``; present it ``left`` the query and
  its stored copy is brought up to date (a withdrawn study says so). Neither is deleted unless
  ``prune`` asks: then its resources are deleted (history kept), unless another query still
  holds it.

Each page is stored before the next is asked for, and the run's row then records the page
token to go on from: a run that was killed is resumed from its last stored page by the next
run of the same query (a token the API no longer takes restarts the listing; storing is
idempotent). With push targets, every trial a run stores as new or updated is queued for each
target (``fhirstudy_sync_pending``) and pushed from the store after the listing, through the
push journal, so a target that was down gets it on the next run.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import FhirStudyError, Problem, RemoteRejected
from ..loader import delete_trial, load_reference_resources, store_trial
from ..mappers.ids import provenance_id
from ..pipeline import convert_records
from .client import CtgovClient
from .query import Query
from .records import last_update_of, nct_of, raw_record
from .state import SyncState

OVERLAP_DAYS = 1
FULL_EVERY_DAYS = 7.0
STALE_SECONDS = 600.0    # a running run whose heartbeat is older (or whose process is gone) was interrupted
COUNTS = ("new", "updated", "unchanged", "left", "gone", "pruned", "failed")


class SyncBusy(FhirStudyError):
    """Another sync of the same query is running now."""


@dataclass
class SyncOptions:
    full: bool = False
    prune: bool = False
    full_every_days: float = FULL_EVERY_DAYS
    page_size: int = 1000
    jobs: int = 1


@dataclass
class QueryReport:
    """What one run of one query did."""

    query: str
    describe: str
    mode: str = ""
    since: str | None = None
    resumed: bool = False
    data_timestamp: str | None = None
    unchanged_registry: bool = False
    counts: Counter = field(default_factory=Counter)
    requests: int = 0
    seconds: float = 0.0
    left: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    pushed: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"query": self.query, "asked": self.describe, "mode": self.mode, "since": self.since,
                "resumed": self.resumed, "dataTimestamp": self.data_timestamp,
                "registryUnchanged": self.unchanged_registry, "counts": {k: self.counts[k] for k in COUNTS},
                "requests": self.requests, "seconds": round(self.seconds, 3), "left": self.left, "gone": self.gone,
                "pushed": self.pushed, "notes": self.notes}


class Sync:
    """Syncs of queries into ``store`` from ``client``; ``push`` maps a target URL to a function
    that pushes a list of stored study ids and returns those that arrived plus its counts."""

    def __init__(self, store, client: CtgovClient, options: SyncOptions | None = None,
                 push: dict[str, Callable[[list[str]], tuple[list[str], dict]]] | None = None,
                 on_problem: Callable[[Problem], None] = lambda p: None,
                 on_total: Callable[[int | None], None] = lambda n: None,
                 on_study: Callable[[], None] = lambda: None, clock=time.time):
        self.store, self.client, self.options = store, client, options or SyncOptions()
        self.push = push or {}
        self.on_problem, self.on_total, self.on_study, self.clock = on_problem, on_total, on_study, clock
        self.state = SyncState(store.engine, clock)
        load_reference_resources(store)

    def run(self, query: Query) -> QueryReport:
        started, asked = time.perf_counter(), self.client.requests
        report = QueryReport(query.name, query.describe())
        try:
            self._run(query, report)
        finally:
            report.requests = self.client.requests - asked
            report.seconds = time.perf_counter() - started
        return report

    # -- the run ---------------------------------------------------------------------------------

    def _run(self, query: Query, report: QueryReport) -> None:
        key, state = query.key(), self.state
        remembered = state.query(query.name)
        if remembered is not None and remembered.key != key:
            state.forget(query.name)
            remembered = None
            report.notes.append("the query's parameters changed: started afresh")
        report.data_timestamp = self.client.version().get("dataTimestamp")
        interrupted = state.unfinished(query.name)
        if interrupted is not None and interrupted.key == key:
            self._check_not_running(interrupted)
            state.adopt(interrupted.id)
            run_id, token, mode, since = interrupted.id, interrupted.page_token, interrupted.mode, interrupted.since
            report.resumed = True
            report.counts.update(_loads(interrupted.counts))
        else:
            if interrupted is not None:
                state.end_run(interrupted.id, "failed", _loads(interrupted.counts), "the query changed before it ended")
            mode = self._mode(remembered)
            since = _minus_days(remembered.last_update, OVERLAP_DAYS) if remembered and remembered.last_update else None
            if mode == "update" and report.data_timestamp and report.data_timestamp == remembered.data_timestamp:
                report.mode, report.unchanged_registry = mode, True
                run_id = state.start_run(query.name, key, mode, since, report.data_timestamp)
                self._push(report)          # what an earlier run could not push goes now
                state.end_run(run_id, "done", dict(report.counts))
                return
            run_id = state.start_run(query.name, key, mode, since, report.data_timestamp)
            token = None
        report.mode, report.since = mode, since
        try:
            last_update = self._listing(query, run_id, since, token, report)
            if mode == "full":
                self._membership(query, report)
            self._push(report)
            state.finished_query(query.name, key, report.data_timestamp, last_update, full=mode in ("first", "full"))
            state.end_run(run_id, "done", dict(report.counts))
        except BaseException as exc:
            if not isinstance(exc, (KeyboardInterrupt, SystemExit)):  # interrupted runs stay resumable
                state.end_run(run_id, "failed", dict(report.counts), str(exc) or type(exc).__name__)
            raise

    def _mode(self, remembered) -> str:
        if remembered is None:
            return "first"
        due = remembered.last_full is None or self.clock() - remembered.last_full >= self.options.full_every_days * 86400
        return "full" if self.options.full or due else "update"

    def _check_not_running(self, run) -> None:
        alive = (run.host == socket.gethostname() and run.pid != os.getpid() and _pid_alive(run.pid)) or (
            run.host != socket.gethostname() and self.clock() - run.heartbeat < STALE_SECONDS)
        if alive:
            raise SyncBusy(f"query {run.query!r} is being synced now (run {run.id}, pid {run.pid} on {run.host}, "
                           f"since {_instant(run.started)}); wait for it to end")

    def _listing(self, query: Query, run_id: int, since: str | None, token: str | None,
                 report: QueryReport) -> str | None:
        """Every study of the query (updated since ``since``), page by page from ``token``; the latest
        last-update date seen."""
        params = query.params(updated_since=since)
        try:
            return self._pages(query, run_id, params, token, report)
        except RemoteRejected as exc:
            if token is None or exc.status != 400:
                raise
            report.notes.append(f"the API refused the saved page token ({exc}); listed again from the first page")
            return self._pages(query, run_id, params, None, report)

    def _pages(self, query: Query, run_id: int, params: dict, token: str | None, report: QueryReport) -> str | None:
        waiting: deque = deque()      # [next token, studies left to store] per page read
        latest: dict[str, str | None] = {}

        def records():
            for page in self.client.pages(params, self.options.page_size, count_total=True, token=token):
                if page.total is not None:
                    self.on_total(page.total)
                waiting.append([page.next_token, len(page.studies)])
                for number, study in enumerate(page.studies, start=1):
                    latest[nct_of(study) or ""] = last_update_of(study)
                    yield raw_record(study, self.client.base_url, number)

        seen: dict[str, tuple[str | None, str]] = {}
        newest: str | None = None
        stored: list[str] = []
        for item in convert_records(records(), self.options.jobs):
            nct = item.file.rsplit("/", 1)[-1] if item.file.startswith(self.client.base_url + "/studies/") else None
            outcome = self._store(item)
            report.counts[outcome] += 1
            if outcome in ("new", "updated"):
                stored.append(item.study_id)
            if nct and outcome != "failed":
                seen[nct] = (item.study_id, "in")
                newest = max(filter(None, (newest, latest.pop(nct, None))), default=None)
            self.on_study()
            waiting[0][1] -= 1
            while waiting and waiting[0][1] <= 0:
                next_token = waiting.popleft()[0]
                self._page_done(query, run_id, next_token, seen, stored, report)
                seen, stored = {}, []
        while waiting:   # pages without studies
            self._page_done(query, run_id, waiting.popleft()[0], seen, stored, report)
            seen, stored = {}, []
        return newest

    def _page_done(self, query, run_id, next_token, seen, stored, report) -> None:
        self.state.set_members(query.name, seen)
        for target in self.push:
            self.state.add_pending(target, stored)
        self.state.page_done(run_id, next_token, dict(report.counts))

    def _store(self, item) -> str:
        for problem in item.problems:
            self.on_problem(problem)
        if not item.ok:
            return "failed"
        try:
            return store_trial(self.store, item.bundle)
        except FhirStudyError as exc:
            self.on_problem(Problem(f"not stored: {exc}", file=item.file, record=item.record))
            return "failed"

    def _membership(self, query: Query, report: QueryReport) -> None:
        """The full check: members the query no longer lists are left or gone (see the module)."""
        listed = {nct_of(s) for page in self.client.pages({**query.params(), "fields": "NCTId"}, 1000,
                                                          count_total=False) for s in page.studies}
        known = self.state.members(query.name)
        changes: dict[str, tuple[str | None, str]] = {}
        for nct in sorted(listed - {None}):
            if nct not in known or known[nct][1] != "in":
                changes[nct] = (known.get(nct, (None, ""))[0], "in") if nct in known else (None, "in")
        for nct, (study_id, was) in sorted(known.items()):
            if nct in listed or was == "pruned":
                continue
            state = was if was in ("gone", "left") else self._gone_or_left(nct)   # found out once
            if was != state:
                report.counts[state] += 1
                (report.gone if state == "gone" else report.left).append(nct)
            if self.options.prune and study_id and not self.state.held_elsewhere(query.name, study_id):
                delete_trial(self.store, study_id, provenance_id(study_id))
                report.counts["pruned"] += 1
                state = "pruned"
            changes[nct] = (study_id, state)
        self.state.set_members(query.name, changes)

    def _gone_or_left(self, nct: str) -> str:
        """``gone`` when the registry no longer holds ``nct``; else ``left``, its stored copy
        brought up to date (and queued for the push targets when it changed)."""
        study = self.client.study(nct)
        if study is None:
            return "gone"
        converted = next(iter(convert_records([raw_record(study, self.client.base_url)])))
        if self._store(converted) in ("new", "updated"):
            for target in self.push:
                self.state.add_pending(target, [converted.study_id])
        return "left"

    def _push(self, report: QueryReport) -> None:
        for target, push in self.push.items():
            waiting = self.state.pending(target)
            arrived, counts = push(waiting) if waiting else ([], {})
            self.state.pushed(target, arrived)
            report.pushed[target] = {"sent": len(waiting), "arrived": len(arrived), **counts}


def _loads(text: str | None) -> dict:
    import orjson

    return orjson.loads(text) if text else {}


def _minus_days(date: str, days: int) -> str:
    return (dt.date.fromisoformat(date) - dt.timedelta(days=days)).isoformat()


def _instant(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
