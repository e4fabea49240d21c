"""What ``fhirstudy sync`` remembers, in the store's own database (SQLite or PostgreSQL), so that a
run asks only for what changed and an interrupted run goes on where it stopped.

- ``fhirstudy_sync_query``: one row per query name: its parameters (``key``; a changed query
  starts afresh), the API's ``dataTimestamp`` and the latest ``LastUpdatePostDate`` seen at the
  last complete run, and when the last full check ran.
- ``fhirstudy_sync_run``: one row per run: mode (``first``, ``update``, ``full``), the date asked
  from, status (``running``, ``done``, ``failed``), the token of the next page to read (saved
  after each page is stored: the resume point), counts, requests, heartbeat, host and pid.
- ``fhirstudy_sync_member``: the studies of each query (NCT id, ResearchStudy id, state ``in``,
  ``left`` the query, ``gone`` from the registry, ``pruned``).
- ``fhirstudy_sync_pending``: trials stored but not yet pushed to a ``--push-to`` target (pushed
  next run when a push fails).
"""
from __future__ import annotations

import os
import socket
import time

import orjson
import sqlalchemy as sa

from ..errors import StoreError
from ..store.engine import WRITE_OPTION, db_errors

metadata = sa.MetaData()
queries = sa.Table(
    "fhirstudy_sync_query", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("data_timestamp", sa.String(32)),
    sa.Column("last_update", sa.String(10)),
    sa.Column("last_full", sa.Float),
)
runs = sa.Table(
    "fhirstudy_sync_run", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("query", sa.String(100), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("mode", sa.String(8), nullable=False),
    sa.Column("since", sa.String(10)),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("finished", sa.Float),
    sa.Column("heartbeat", sa.Float, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("page_token", sa.Text),
    sa.Column("data_timestamp", sa.String(32)),
    sa.Column("counts", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
    sa.Index("ix_sync_run_query", "query", "id"),
)
members = sa.Table(
    "fhirstudy_sync_member", metadata,
    sa.Column("query", sa.String(100), primary_key=True),
    sa.Column("nct", sa.String(16), primary_key=True),
    sa.Column("study_id", sa.String(64)),
    sa.Column("state", sa.String(8), nullable=False),
    sa.Column("changed", sa.Float, nullable=False),
)
pending = sa.Table(
    "fhirstudy_sync_pending", metadata,
    sa.Column("target", sa.String(1000), primary_key=True),
    sa.Column("study_id", sa.String(64), primary_key=True),
)


class SyncState:
    """The sync tables of the database behind ``engine`` (created on first use)."""

    def __init__(self, engine: sa.Engine, clock=time.time):
        self.engine, self.clock = engine, clock
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        for attempt in range(2):  # a second process creating them at the same moment loses harmlessly
            try:
                with db_errors():
                    metadata.create_all(self._writer)
                break
            except StoreError:
                if attempt:
                    raise

    def _read(self, statement):
        with db_errors(), self.engine.connect() as conn:
            return conn.execute(statement).all()

    def _write(self, *statements) -> None:
        with db_errors(), self._writer.begin() as conn:
            for statement in statements:
                conn.execute(statement)

    # -- queries ---------------------------------------------------------------------------------

    def query(self, name: str):
        """The query row of ``name`` (None before its first complete run)."""
        rows = self._read(sa.select(queries).where(queries.c.name == name))
        return rows[0] if rows else None

    def forget(self, name: str) -> None:
        """Drop what is remembered of ``name`` (its parameters changed): the next run is a first run."""
        self._write(sa.delete(queries).where(queries.c.name == name),
                    sa.delete(members).where(members.c.query == name))

    def finished_query(self, name: str, key: str, data_timestamp: str | None, last_update: str | None,
                       full: bool) -> None:
        """Record a complete run of ``name``."""
        old = self.query(name)
        values = {"key": key, "data_timestamp": data_timestamp,
                  "last_update": max(filter(None, (last_update, old.last_update if old else None)), default=None),
                  "last_full": self.clock() if full else (old.last_full if old else None)}
        with db_errors(), self._writer.begin() as conn:
            if old is None:
                conn.execute(sa.insert(queries).values(name=name, **values))
            else:
                conn.execute(sa.update(queries).where(queries.c.name == name).values(**values))

    # -- runs ------------------------------------------------------------------------------------

    def unfinished(self, name: str):
        """The last run of ``name`` when it did not finish (None otherwise)."""
        rows = self._read(sa.select(runs).where(runs.c.query == name).order_by(runs.c.id.desc()).limit(1))
        return rows[0] if rows and rows[0].status == "running" else None

    def start_run(self, name: str, key: str, mode: str, since: str | None, data_timestamp: str | None) -> int:
        now = self.clock()
        with db_errors(), self._writer.begin() as conn:
            return conn.execute(sa.insert(runs).values(
                query=name, key=key, mode=mode, since=since, status="running", started=now, heartbeat=now,
                host=socket.gethostname(), pid=os.getpid(), data_timestamp=data_timestamp,
                counts=orjson.dumps({}).decode())).inserted_primary_key[0]

    def adopt(self, run_id: int) -> None:
        """Take over an interrupted run (this process now owns it)."""
        self._write(sa.update(runs).where(runs.c.id == run_id).values(
            host=socket.gethostname(), pid=os.getpid(), heartbeat=self.clock()))

    def page_done(self, run_id: int, next_token: str | None, counts: dict) -> None:
        """After a page is stored: where to go on from, and the counts so far."""
        self._write(sa.update(runs).where(runs.c.id == run_id).values(
            page_token=next_token, counts=orjson.dumps(counts).decode(), heartbeat=self.clock()))

    def end_run(self, run_id: int, status: str, counts: dict, error: str | None = None) -> None:
        self._write(sa.update(runs).where(runs.c.id == run_id).values(
            status=status, finished=self.clock(), heartbeat=self.clock(), page_token=None,
            counts=orjson.dumps(counts).decode(), error=error))

    def runs(self, limit: int = 20) -> list:
        """The latest runs, newest first."""
        return self._read(sa.select(runs).order_by(runs.c.id.desc()).limit(limit))

    # -- members ---------------------------------------------------------------------------------

    def members(self, name: str) -> dict[str, tuple[str | None, str]]:
        """NCT id -> (ResearchStudy id, state) of the studies of ``name``."""
        return {r.nct: (r.study_id, r.state) for r in
                self._read(sa.select(members).where(members.c.query == name))}

    def set_members(self, name: str, changes: dict[str, tuple[str | None, str]]) -> None:
        """Upsert (study id, state) per NCT id of ``name``."""
        if not changes:
            return
        now = self.clock()
        known = self.members(name)
        with db_errors(), self._writer.begin() as conn:
            for nct, (study_id, state) in changes.items():
                if nct in known:
                    old_id = known[nct][0]
                    conn.execute(sa.update(members).where(members.c.query == name, members.c.nct == nct)
                                 .values(study_id=study_id or old_id, state=state, changed=now))
                else:
                    conn.execute(sa.insert(members).values(query=name, nct=nct, study_id=study_id, state=state,
                                                           changed=now))

    def held_elsewhere(self, name: str, study_id: str) -> bool:
        """True when another query still counts ``study_id`` as one of its studies."""
        return bool(self._read(sa.select(members.c.nct).where(
            members.c.query != name, members.c.study_id == study_id, members.c.state == "in").limit(1)))

    # -- pushes not yet made ---------------------------------------------------------------------

    def add_pending(self, target: str, study_ids: list[str]) -> None:
        if not study_ids:
            return
        have = {r.study_id for r in self._read(sa.select(pending.c.study_id).where(pending.c.target == target))}
        new = [{"target": target, "study_id": s} for s in dict.fromkeys(study_ids) if s not in have]
        if new:
            with db_errors(), self._writer.begin() as conn:
                conn.execute(sa.insert(pending), new)

    def pending(self, target: str) -> list[str]:
        return sorted(r.study_id for r in self._read(sa.select(pending.c.study_id).where(pending.c.target == target)))

    def pushed(self, target: str, study_ids: list[str]) -> None:
        if study_ids:
            self._write(sa.delete(pending).where(pending.c.target == target, pending.c.study_id.in_(study_ids)))
