"""Export jobs kept in the store's database, and the runner that works them off.

``fhirstudy_export_job`` holds one row per job: its id (random, unguessable: the status URL is
the job's only name), status (``queued``, ``running``, ``done``, ``failed``, ``cancelled``), the
:class:`~.request.ExportRequest` as JSON, the base URL and whether a token is needed (for the
manifest), kick-off and transaction times, progress, the manifest once done, the error once
failed, the heartbeat and owner of the worker running it, the attempt and the expiry. Times the
server compares (heartbeat, expiry, last poll) are epoch seconds.

Every state change is one conditional UPDATE, so any number of workers and processes share the
table: a :class:`Runner` claims a queued job (``WHERE status='queued' AND attempt=<seen>``,
rowcount 1), writes it into ``<directory>/<job>/<attempt>/``, heartbeats while it runs, and
publishes it by setting ``done`` and the manifest in one UPDATE that also checks it still owns
the job. A running job whose heartbeat is older than ``stale_seconds`` (its worker was killed) is
claimed again and run from the start into a fresh attempt directory, the old one removed; after
:data:`MAX_ATTEMPTS` it is failed. So a manifest only ever points at files that were complete
(and fsynced) before it was published. Cancelled, failed and done jobs past their expiry are
swept, rows and files.
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import orjson
import sqlalchemy as sa

from fhirstudy.errors import StoreError, TooManyRequests
from fhirstudy.search.index import now_instant
from fhirstudy.store.engine import WRITE_OPTION, db_errors

from .request import ExportRequest
from .writer import Cancelled, ExportResult

MAX_ATTEMPTS = 3            # runs of one job (a killed worker's job is run again) before it fails
RUNNER_IDLE_SECONDS = 1.0   # a runner with nothing to do looks for work this often
SWEEP_SECONDS = 5.0         # and for expired jobs this often
ACTIVE = ("queued", "running")
SUBMIT_LOCK = 0x66686972   # the PostgreSQL advisory lock that takes kick-offs one at a time
log = logging.getLogger(__name__)

jobs_metadata = sa.MetaData()
jobs_table = sa.Table(
    "fhirstudy_export_job", jobs_metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("base_url", sa.Text, nullable=False),
    sa.Column("requires_token", sa.Boolean, nullable=False),
    sa.Column("kickoff_time", sa.String(32), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("transaction_time", sa.String(32)),
    sa.Column("done", sa.BigInteger, nullable=False, default=0),
    sa.Column("total", sa.BigInteger),
    sa.Column("manifest", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("heartbeat", sa.Float),
    sa.Column("owner", sa.String(128)),
    sa.Column("attempt", sa.Integer, nullable=False, default=0),
    sa.Column("expires", sa.Float),
    sa.Column("polled", sa.Float),
    sa.Index("ix_export_job_status", "status", "created"),
)


@dataclass(frozen=True)
class Job:
    """One row of the job table."""

    id: str
    status: str
    request: ExportRequest
    attempt: int
    done: int
    total: int | None
    manifest: dict | None
    error: str | None
    expires: float | None
    heartbeat: float | None


def _job(row) -> Job:
    return Job(row.id, row.status, ExportRequest.from_json(orjson.loads(row.request)), row.attempt, row.done,
               row.total, orjson.loads(row.manifest) if row.manifest else None, row.error, row.expires,
               row.heartbeat)


class Jobs:
    """The export jobs of one database (see the module); files under ``directory``."""

    def __init__(self, engine: sa.Engine, directory: Path, *, retention_seconds: float, max_jobs: int,
                 poll_seconds: float, stale_seconds: float, clock: Callable[[], float] = time.time):
        self.engine, self.directory = engine, Path(directory)
        self.retention, self.max_jobs, self.poll_seconds = retention_seconds, max_jobs, poll_seconds
        self.stale_seconds, self.clock = stale_seconds, clock
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._ready = False

    def _tables(self) -> None:
        """Create the job table once (a second process doing the same at once loses harmlessly).
        Through the writer (SQLite: ``BEGIN IMMEDIATE``, which waits for the busy timeout), since a
        read transaction that turns into a write is refused at once while another one writes."""
        if self._ready:
            return
        for attempt in range(2):
            try:
                with db_errors():
                    jobs_metadata.create_all(self._writer)
                break
            except StoreError:
                if attempt:
                    raise
        self._ready = True

    def _write(self, statement) -> int:
        self._tables()
        with db_errors(), self._writer.begin() as conn:
            return conn.execute(statement).rowcount

    def _row(self, job_id: str):
        self._tables()
        with db_errors(), self.engine.connect() as conn:
            return conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id)).first()

    def job_dir(self, job_id: str) -> Path:
        """Where the attempts of ``job_id`` are written."""
        return self.directory / job_id

    # -- the client's side --------------------------------------------------------------------

    def submit(self, request: ExportRequest, base_url: str, requires_token: bool) -> str:
        """Queue ``request``; its job id. TooManyRequests when :attr:`max_jobs` are queued or running."""
        self._tables()
        job_id = secrets.token_urlsafe(24)
        now = self.clock()
        with db_errors(), self._writer.begin() as conn:
            if conn.dialect.name == "postgresql":   # kick-offs one at a time (SQLite: BEGIN IMMEDIATE)
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SUBMIT_LOCK})
            active = conn.execute(sa.select(sa.func.count()).select_from(jobs_table)
                                  .where(jobs_table.c.status.in_(ACTIVE))).scalar_one()
            if active < self.max_jobs:
                conn.execute(sa.insert(jobs_table).values(
                    id=job_id, status="queued", request=orjson.dumps(request.to_json()).decode(),
                    base_url=base_url, requires_token=requires_token, kickoff_time=now_instant(), created=now,
                    done=0, attempt=0))
                return job_id
        raise TooManyRequests(f"{self.max_jobs} exports are queued or running, the most this server takes; "
                              f"try again later", headers={"Retry-After": str(self.retry_after())})

    def retry_after(self, seconds: float | None = None) -> int:
        """Whole seconds for a ``Retry-After`` (the poll interval unless ``seconds``; at least 1)."""
        return max(1, int(round(self.poll_seconds if seconds is None else seconds)))

    def poll(self, job_id: str) -> tuple[Job | None, bool]:
        """The job ``job_id`` as a status request sees it (None: unknown, cancelled or expired),
        and whether this poll of an unfinished job came sooner than :attr:`poll_seconds` after
        the last one (it is then not counted)."""
        now = self.clock()
        counted = self._write(sa.update(jobs_table).where(
            jobs_table.c.id == job_id, jobs_table.c.status.in_(ACTIVE),
            sa.or_(jobs_table.c.polled.is_(None), jobs_table.c.polled <= now - self.poll_seconds))
            .values(polled=now)) if self.poll_seconds else 1
        job = self.get(job_id)
        return job, bool(job and job.status in ACTIVE and not counted)

    def get(self, job_id: str) -> Job | None:
        """The job ``job_id``, None when unknown, cancelled or expired."""
        row = self._row(job_id)
        if row is None or row.status == "cancelled" or (row.expires is not None and row.expires <= self.clock()):
            return None
        return _job(row)

    def cancel(self, job_id: str) -> bool:
        """Cancel ``job_id`` (its files are removed; a runner working on it stops); False when
        there is no such job to cancel."""
        now = self.clock()
        return bool(self._write(sa.update(jobs_table).where(
            jobs_table.c.id == job_id, jobs_table.c.status != "cancelled",
            sa.or_(jobs_table.c.expires.is_(None), jobs_table.c.expires > now))
            .values(status="cancelled", expires=now)))

    def file_path(self, job: Job, name: str) -> Path | None:
        """The file ``name`` of the done ``job``'s manifest, None when the manifest lists no such file."""
        if job.status != "done" or not job.manifest:
            return None
        listed = {entry["url"].rsplit("/", 1)[1] for kind in ("output", "error", "deleted")
                  for entry in job.manifest.get(kind, [])}
        return self.job_dir(job.id) / str(job.attempt) / name if name in listed else None

    # -- the runner's side --------------------------------------------------------------------

    def claim(self, owner: str) -> Job | None:
        """Take the oldest queued job, or a running one whose worker went silent, for ``owner``;
        fail one that has had :data:`MAX_ATTEMPTS` runs. None when there is nothing to do."""
        self._tables()
        now = self.clock()
        stale = now - self.stale_seconds
        with db_errors(), self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs_table.c.id, jobs_table.c.status, jobs_table.c.attempt)
                                .where(sa.or_(jobs_table.c.status == "queued",
                                              sa.and_(jobs_table.c.status == "running",
                                                      jobs_table.c.heartbeat < stale)))
                                .order_by(jobs_table.c.created).limit(8)).all()
        for row in rows:
            seen = [jobs_table.c.id == row.id, jobs_table.c.status == row.status, jobs_table.c.attempt == row.attempt]
            if row.status == "running":
                seen.append(jobs_table.c.heartbeat < stale)
            if row.attempt >= MAX_ATTEMPTS:
                self._write(sa.update(jobs_table).where(*seen).values(
                    status="failed", expires=now + self.retention,
                    error=f"the export was started {row.attempt} times and its worker stopped each time"))
                continue
            if self._write(sa.update(jobs_table).where(*seen).values(
                    status="running", owner=owner, attempt=row.attempt + 1, heartbeat=now, done=0, total=None)):
                return self.get(row.id)
        return None

    def heartbeat(self, job: Job, owner: str, done: int, total: int | None) -> bool:
        """Note that ``owner`` still runs ``job`` (and how far it is); False when it no longer
        owns it (cancelled, or claimed again by another worker)."""
        return bool(self._write(self._mine(job, owner).values(heartbeat=self.clock(), done=done, total=total)))

    def publish(self, job: Job, owner: str, result: ExportResult) -> bool:
        """Mark ``job`` done with its manifest, if ``owner`` still owns it."""
        row = self._row(job.id)
        if row is None:
            return False
        manifest = self.manifest(job, result, row.base_url, row.requires_token)
        count = sum(f.count for f in result.output)
        return bool(self._write(self._mine(job, owner).values(
            status="done", manifest=orjson.dumps(manifest).decode(), transaction_time=result.transaction_time,
            done=count, total=count, expires=self.clock() + self.retention)))

    def fail(self, job: Job, owner: str, error: str) -> bool:
        """Mark ``job`` failed with ``error``, if ``owner`` still owns it."""
        return bool(self._write(self._mine(job, owner).values(status="failed", error=error,
                                                              expires=self.clock() + self.retention)))

    def requeue(self, job: Job, owner: str) -> bool:
        """Give ``job`` back to the queue (a transient failure: it is run again, as an attempt more)."""
        return bool(self._write(self._mine(job, owner).values(status="queued", owner=None, heartbeat=None)))

    def _mine(self, job: Job, owner: str):
        return sa.update(jobs_table).where(jobs_table.c.id == job.id, jobs_table.c.status == "running",
                                           jobs_table.c.owner == owner, jobs_table.c.attempt == job.attempt)

    @staticmethod
    def manifest(job: Job, result: ExportResult, base: str, requires_token: bool) -> dict:
        """The Bulk Data manifest of ``job``'s ``result``: file URLs under ``base``."""
        def entries(files):
            return [{"type": f.type, "url": f"{base}/$export-file/{job.id}/{f.name}", "count": f.count}
                    for f in files]
        manifest = {"transactionTime": result.transaction_time, "request": job.request.request_url,
                    "requiresAccessToken": requires_token, "output": entries(result.output),
                    "error": entries(result.error)}
        if job.request.since is not None:
            manifest["deleted"] = entries(result.deleted)
        return manifest

    def sweep(self) -> int:
        """Remove the jobs past their expiry (rows and files) and files no job owns; how many jobs."""
        self._tables()
        now = self.clock()
        with db_errors(), self.engine.connect() as conn:
            expired = conn.execute(sa.select(jobs_table.c.id).where(jobs_table.c.expires <= now)).scalars().all()
        for job_id in expired:
            shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
            self._write(sa.delete(jobs_table).where(jobs_table.c.id == job_id, jobs_table.c.expires <= now))
        if self.directory.is_dir():
            with db_errors(), self.engine.connect() as conn:
                known = set(conn.execute(sa.select(jobs_table.c.id)).scalars())
            for entry in self.directory.iterdir():
                if entry.is_dir() and entry.name not in known:
                    shutil.rmtree(entry, ignore_errors=True)
        return len(expired)


Export = Callable[[ExportRequest, Path, Callable[[int, int | None], None], Callable[[], bool]], ExportResult]


class Runner:
    """A thread working off the jobs of :class:`Jobs` one at a time: ``export(request, directory,
    progress, cancelled)`` writes one (:func:`~.writer.write_export` on the app's store)."""

    def __init__(self, jobs: Jobs, export: Export, page_pause: float = 0.0):
        self.jobs, self.export, self.page_pause = jobs, export, page_pause
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._swept = 0.0
        self.sweep_seconds = min(SWEEP_SECONDS, max(0.5, jobs.retention / 2))   # expired files go soon after

    def start(self) -> "Runner":
        """Start the runner's thread (a daemon: it dies with the process, and its job is then
        run again elsewhere once its heartbeat is stale)."""
        self._thread = threading.Thread(target=self._loop, name="fhirstudy-export", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look for work now (a job was queued)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (a running job stops at its next page and is given back to the queue)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.run_once():
                    continue
            except Exception:   # the database went away for a moment: try again later
                log.exception("export runner")
            self._wake.wait(RUNNER_IDLE_SECONDS)
            self._wake.clear()

    def run_once(self) -> bool:
        """Sweep expired jobs now and then, and run one job if there is one; whether there was."""
        if time.monotonic() - self._swept > self.sweep_seconds:
            self._swept = time.monotonic()
            self.jobs.sweep()
        job = self.jobs.claim(self.owner)
        if job is None:
            return False
        self._run(job)
        return True

    def _run(self, job: Job) -> None:
        root = self.jobs.job_dir(job.id)
        directory = root / str(job.attempt)
        if root.is_dir():
            for old in root.iterdir():   # an earlier attempt's half files
                shutil.rmtree(old, ignore_errors=True)
        directory.mkdir(parents=True)
        beat = _Heartbeat(self.jobs, job, self.owner, self._stop)
        beat.start()
        try:
            result = self.export(job.request, directory, self._progress(beat), beat.lost)
            beat.stop()
            if not self.jobs.publish(job, self.owner, result):
                shutil.rmtree(directory, ignore_errors=True)
        except Cancelled:
            beat.stop()
            shutil.rmtree(directory, ignore_errors=True)
            if self._stop.is_set():
                self.jobs.requeue(job, self.owner)
        except Exception as exc:
            beat.stop()
            shutil.rmtree(directory, ignore_errors=True)
            if isinstance(exc, StoreError) and job.attempt < MAX_ATTEMPTS:
                log.warning("export %s: %s; it will be run again", job.id, exc)
                self.jobs.requeue(job, self.owner)
            else:
                log.exception("export %s failed", job.id)
                self.jobs.fail(job, self.owner, _error_text(exc))

    def _progress(self, beat: "_Heartbeat") -> Callable[[int, int | None], None]:
        def progress(done: int, total: int | None) -> None:
            beat.done, beat.total = done, total
            if self.page_pause:
                self._stop.wait(self.page_pause)
        return progress


def _error_text(exc: Exception) -> str:
    if isinstance(exc, (StoreError, LookupError, OSError)):
        return f"the export failed: {exc}"
    return "the export failed (an internal error; the server log says more)"


class _Heartbeat:
    """A thread noting every little while that a job is still being run (and how far it is), and
    finding out when it is no longer this runner's (cancelled, or claimed again)."""

    def __init__(self, jobs: Jobs, job: Job, owner: str, stopping: threading.Event):
        self.jobs, self.job, self.owner, self.stopping = jobs, job, owner, stopping
        self.done, self.total = 0, None
        self.interval = max(0.1, min(1.0, jobs.stale_seconds / 3))
        self._lost, self._end = False, threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fhirstudy-export-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._end.set()
        self._thread.join()

    def lost(self) -> bool:
        """Whether the export is to stop (the ``cancelled`` callback of the writer)."""
        return self._lost or self.stopping.is_set()

    def _loop(self) -> None:
        while not self._end.wait(self.interval):
            try:
                if not self.jobs.heartbeat(self.job, self.owner, self.done, self.total):
                    self._lost = True
                    return
            except Exception:
                log.exception("export heartbeat")   # tried again at the next beat
