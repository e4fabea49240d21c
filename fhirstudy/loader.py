"""Putting converted trials into the store: each trial's Bundle in one short transaction, plus the
reference resources fhirstudy publishes (its condition and subtype CodeSystems).

A load never holds the write lock while it works: records are converted before their trial's
transaction, and ``put_many`` computes content hashes and index rows before it begins one (see
:meth:`fhirstudy.store.SqlStore.prepare`), so the transaction only writes rows.  On SQLite a
server write waiting beside a long load therefore gets the lock between two trials instead of
running into its busy timeout.
"""
from __future__ import annotations

from .narrative import add_narratives
from .terminology import condition_code_system, subtype_code_system


def reference_resources() -> list[dict]:
    """Resources every fhirstudy store holds whatever was loaded: the condition and subtype
    CodeSystems, each with its narrative."""
    return add_narratives([condition_code_system(), subtype_code_system()])


def load_reference_resources(store) -> None:
    """Store the reference resources (unchanged ones get no new version)."""
    store.put_many(reference_resources())


def store_bundle(store, bundle: dict) -> int:
    """Store every resource of a trial's transaction Bundle in one short transaction (prepared
    before it begins); returns how many."""
    resources = [entry["resource"] for entry in bundle["entry"]]
    store.put_many(resources)
    return len(resources)


TRIAL_OUTCOMES = ("new", "updated", "unchanged")


def store_trial(store, bundle: dict) -> str:
    """Store a trial's Bundle as ``store_bundle`` does, and also delete what an earlier version of
    the same trial had and this one has not (a site or an outcome removed at the source: the
    trial's earlier Provenance names every resource converted then), in the same transaction.
    Returns ``new`` (its ResearchStudy was not stored), ``updated`` or ``unchanged`` (nothing
    stored changed: no resource got a new version)."""
    import orjson

    resources = [entry["resource"] for entry in bundle["entry"]]
    provenance = next((r for r in resources if r["resourceType"] == "Provenance"), None)
    earlier = store.read("Provenance", provenance["id"]) if provenance else None
    now = {(r["resourceType"], r["id"]) for r in resources}
    gone = sorted({tuple(t["reference"].split("/", 1)) for t in orjson.loads(earlier).get("target", [])
                   if "/" in t.get("reference", "")} - now) if earlier else []
    prepared = store.prepare(resources)

    def work(tx):
        results = tx.put_prepared(prepared)
        removed = [tx.delete(rtype, rid) for rtype, rid in gone]
        return results, [r for r in removed if r is not None]

    results, removed = store.write(work)
    if results[0].outcome == "created":
        return "new"
    return "unchanged" if not removed and all(r.outcome == "unchanged" for r in results) else "updated"


def delete_trial(store, study_id: str, pid: str) -> int:
    """Delete a trial: its ResearchStudy, every resource its Provenance ``pid`` names, and the
    Provenance, in one transaction (history kept: each gets a deleted version). Returns how many
    were live."""
    import orjson

    stored = store.read("Provenance", pid)
    keys = {("ResearchStudy", study_id), ("Provenance", pid)}
    if stored:
        keys |= {tuple(t["reference"].split("/", 1)) for t in orjson.loads(stored).get("target", [])
                 if "/" in t.get("reference", "")}
    order = sorted(keys, key=lambda k: (k[0] != "Provenance", k[0] != "ResearchStudy", k))  # who points first
    return sum(1 for r in store.write(lambda tx: [tx.delete(t, i) for t, i in order]) if r is not None)
