"""Putting converted trials into the store: each trial's Bundle in one short transaction, plus the
reference resources fhirstudy publishes (its condition and subtype CodeSystems).

A load never holds the write lock while it works: records are converted before their trial's
transaction, and ``put_many`` computes content hashes and index rows before it begins one (see
:meth:`fhirstudy.store.SqlStore.prepare`), so the transaction only writes rows.  On SQLite a
server write waiting beside a long load therefore gets the lock between two trials instead of
running into its busy timeout.
"""
from __future__ import annotations

from .terminology import condition_code_system, subtype_code_system


def reference_resources() -> list[dict]:
    """Resources every fhirstudy store holds whatever was loaded: the condition and subtype
    CodeSystems."""
    return [condition_code_system(), subtype_code_system()]


def load_reference_resources(store) -> None:
    """Store the reference resources (unchanged ones get no new version)."""
    store.put_many(reference_resources())


def store_bundle(store, bundle: dict) -> int:
    """Store every resource of a trial's transaction Bundle in one short transaction (prepared
    before it begins); returns how many."""
    resources = [entry["resource"] for entry in bundle["entry"]]
    store.put_many(resources)
    return len(resources)
