"""Putting converted trials into the store: each trial's Bundle in one transaction, plus the
reference resources fhirstudy publishes (its condition CodeSystem)."""
from __future__ import annotations

from .terminology import condition_code_system


def reference_resources() -> list[dict]:
    """Resources every fhirstudy store holds whatever was loaded: the condition CodeSystem."""
    return [condition_code_system()]


def load_reference_resources(store) -> None:
    """Store the reference resources (unchanged ones get no new version)."""
    store.put_many(reference_resources())


def store_bundle(store, bundle: dict) -> int:
    """Store every resource of a trial's transaction Bundle in one transaction; returns how many."""
    resources = [entry["resource"] for entry in bundle["entry"]]
    store.put_many(resources)
    return len(resources)
