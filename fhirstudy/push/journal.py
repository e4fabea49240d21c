"""The push journal: what arrived where, so a push can resume and a nightly push sends only changes.

A SQLite file with one row per (target base URL, trial id): the content hash of what was sent,
the FHIR version, the server ids of the trial's resources (``{"Type/our-id": "Type/server-id"}``),
the outcome and when. A row is written only after the server committed the trial's transaction,
so a push killed half-way resumes from the first trial that has no row (or a different hash).
"""
from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson

from ..errors import JournalError

SCHEMA = """
CREATE TABLE IF NOT EXISTS pushed (
    target       TEXT NOT NULL,
    trial        TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    fhir_version TEXT NOT NULL,
    server_ids   TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    pushed_at    TEXT NOT NULL,
    PRIMARY KEY (target, trial)
)
"""


@dataclass(frozen=True)
class Entry:
    """One trial as the journal remembers it."""

    trial: str
    content_hash: str
    fhir_version: str
    server_ids: dict[str, str]
    outcome: str
    pushed_at: str


class Journal:
    """The journal at ``path`` (created when missing); ``":memory:"`` for a journal of one run."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(SCHEMA)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the push journal {self.path}: {exc}", path=self.path) from exc

    def get(self, target: str, trial: str) -> Entry | None:
        """What the journal holds for ``trial`` at ``target``."""
        with self._lock, self._errors():
            row = self._db.execute("SELECT trial, content_hash, fhir_version, server_ids, outcome, pushed_at "
                                   "FROM pushed WHERE target = ? AND trial = ?", (target, trial)).fetchone()
        return self._entry(row) if row else None

    def record(self, target: str, trial: str, content_hash: str, fhir_version: str,
               server_ids: dict[str, str], outcome: str) -> None:
        """Remember that ``trial`` arrived at ``target`` with this content (committed at once)."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._lock, self._errors():
            self._db.execute("INSERT OR REPLACE INTO pushed VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (target, trial, content_hash, fhir_version,
                              orjson.dumps(server_ids, option=orjson.OPT_SORT_KEYS).decode(), outcome, now))

    def entries(self, target: str) -> list[Entry]:
        """Every trial recorded for ``target``, by trial id."""
        with self._lock, self._errors():
            rows = self._db.execute("SELECT trial, content_hash, fhir_version, server_ids, outcome, pushed_at "
                                    "FROM pushed WHERE target = ? ORDER BY trial", (target,)).fetchall()
        return [self._entry(r) for r in rows]

    def _entry(self, row: tuple) -> Entry:
        """A row as an Entry; JournalError for a row this version cannot read."""
        try:
            server_ids = orjson.loads(row[3])
        except (orjson.JSONDecodeError, TypeError) as exc:
            server_ids = exc
        if not isinstance(server_ids, dict) or not all(isinstance(v, str) for v in row[:3] + row[4:]):
            raise JournalError(f"push journal {self.path}: holds an entry that is not readable (trial {row[0]!r}); "
                               f"remove the file to start a new journal", path=self.path)
        return Entry(*row[:3], server_ids, *row[4:])

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def _errors(self):
        journal = self

        class _Translate:
            def __enter__(self):
                return None

            def __exit__(self, kind, exc, tb):
                if isinstance(exc, sqlite3.Error):
                    raise JournalError(f"push journal {journal.path}: {exc}", path=journal.path) from exc
                return False

        return _Translate()
