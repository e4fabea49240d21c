"""The store path of a load: converted Bundles into a fresh SQLite database, timed on its own.

    python bench/store.py BUNDLES.ndjson [--limit N] [--repeat 3] [--db out.db] [--profile out.prof]
    python bench/store.py --compare a.db b.db

``fhirstudy load`` converts each trial and then stores it (``loader.store_bundle``:
``store.prepare``, content hashes and index rows, then one write transaction).  This times only
the second part: the Bundles (``fhirstudy convert -o FILE`` output) are read and parsed first,
then each is stored as ``store_bundle`` does, into a new database file, with a fixed clock (so
two runs write the same bytes).  Beside it, in the same run, the baseline: orjson-encoding the
same resources once (what any store must at least do).  Both are timed in CPU seconds of this
process (SQLite works in it too), the fastest of ``--repeat`` runs, and the figure to compare
between two versions of the code is their ratio, since other work on the machine moves both.

``--compare`` checks that two databases written from the same input (e.g. one by main's code:
``PYTHONPATH=../main python bench/store.py ... --db main.db``) hold the same thing: every
``resource`` and ``resource_history`` row and every index table's rows, term ids resolved to
their texts (and the raw rows too, which agree when terms were added in the same order).
Exit 1 and the first differences when they do not.
"""
from __future__ import annotations

import argparse
import cProfile
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import orjson

CLOCK = "2026-12-01T00:00:00.000Z"  # every version gets this lastUpdated: runs are comparable byte for byte


def read_bundles(path: Path, limit: int | None) -> list[dict]:
    """The Bundles of an NDJSON file, parsed (not timed)."""
    bundles = []
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                bundles.append(orjson.loads(line))
                if limit and len(bundles) >= limit:
                    break
    return bundles


def store_all(bundles: list[dict], db: Path, profile: Path | None = None) -> dict:
    """Store every Bundle into a new SQLite database at ``db``; seconds of prepare, write, total
    (wall clock) and ``cpu`` (this process's CPU time: SQLite runs in it; less moved by other
    work on the machine than the wall clock)."""
    from fhirstudy.search.registry import load_registry
    from fhirstudy.store import SqlStore
    from fhirstudy.store.engine import engine_for

    if db.exists():
        db.unlink()
    store = SqlStore(engine_for(f"sqlite:///{db}"), load_registry(), clock=lambda: CLOCK)
    profiler = cProfile.Profile() if profile else None
    prepare = write = 0.0
    try:
        start, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        for bundle in bundles:  # as loader.store_bundle, with the two halves timed apart
            resources = [entry["resource"] for entry in bundle["entry"]]
            t0 = time.perf_counter()
            prepared = store.prepare(resources)
            t1 = time.perf_counter()
            store.write(lambda tx: tx.put_prepared(prepared))
            write += time.perf_counter() - t1
            prepare += t1 - t0
        if profiler:
            profiler.disable()
        total, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        store.close()
    if profiler:
        profiler.dump_stats(str(profile))
    return {"prepare": prepare, "write": write, "total": total, "cpu": cpu}


def encode_all(bundles: list[dict], rounds: int = 10) -> float:
    """CPU seconds to orjson-encode every resource of ``bundles`` once (the fastest of
    ``rounds``): the baseline."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for bundle in bundles:
            for entry in bundle["entry"]:
                orjson.dumps(entry["resource"])
        best = min(best, time.process_time() - start)
    return best


def _rows(conn: sqlite3.Connection, table: str, resolve: dict[str, list[str]]) -> list[tuple]:
    columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    terms = dict(conn.execute("SELECT tid, text FROM idx_term"))
    term_columns = set(resolve.get(table, ()))
    order = ", ".join(str(n) for n in range(1, len(columns) + 1))  # index tables have no rowid
    rows = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
    return [tuple(terms.get(v) if c in term_columns and v is not None else v for c, v in zip(columns, row))
            for row in rows]


def compare(a: Path, b: Path) -> int:
    """0 when ``a`` and ``b`` hold the same resources, history and index rows; else 1."""
    from fhirstudy.store.schema import INDEX_TABLES, TERM_COLUMNS

    resolve = {INDEX_TABLES[kind].name: list(cols) for kind, cols in TERM_COLUMNS.items()}
    tables = ["resource", "resource_history", *(t.name for t in INDEX_TABLES.values())]
    first, second = sqlite3.connect(a), sqlite3.connect(b)
    differences = 0
    for table in tables:
        for mode, how in (("texts", resolve), ("raw", {})):
            left, right = _rows(first, table, how), _rows(second, table, how)
            if left != right:
                differences += 1
                at = next((i for i, (x, y) in enumerate(zip(left, right)) if x != y), min(len(left), len(right)))
                print(f"{table} ({mode}): {len(left)} vs {len(right)} rows; first difference at row {at}:\n"
                      f"  {left[at] if at < len(left) else None}\n  {right[at] if at < len(right) else None}")
        print(f"{table}: {len(_rows(first, table, {}))} rows compared")
    print("same" if not differences else f"{differences} tables differ")
    return 1 if differences else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="?", type=Path, help="converted Bundles, one per line (fhirstudy convert -o)")
    parser.add_argument("--limit", type=int, help="store only the first N trials")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the fastest is reported")
    parser.add_argument("--db", type=Path, help="keep the database of the last run here")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the last run here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two databases")
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.bundles is None:
        parser.error("give BUNDLES (or --compare A B)")
    bundles = read_bundles(args.bundles, args.limit)
    count = len(bundles)
    resources = sum(len(b["entry"]) for b in bundles)
    with tempfile.TemporaryDirectory(prefix="fhirstudy-bench-store-") as tmp:
        runs, baselines = [], []
        for n in range(args.repeat):
            last = n == args.repeat - 1
            baselines.append(encode_all(bundles))
            runs.append(store_all(bundles, args.db if last and args.db else Path(tmp) / "store.db",
                                  args.profile if last else None))
    best = min(runs, key=lambda r: r["cpu"])
    baseline = min(baselines)
    figures = {"trials": count, "resources": resources, "store_trials_per_cpu_s": count / best["cpu"],
               "store_trials_per_s": count / best["total"], "cpu_s": best["cpu"], "prepare_s": best["prepare"],
               "write_s": best["write"], "total_s": best["total"], "encode_trials_per_cpu_s": count / baseline,
               "ratio": baseline / best["cpu"]}
    print(f"{count} trials ({resources} resources): store {figures['store_trials_per_cpu_s']:.1f} trials per "
          f"CPU second ({figures['store_trials_per_s']:.1f}/s wall: prepare {best['prepare']:.2f} s + write "
          f"{best['write']:.2f} s), orjson-encode baseline {figures['encode_trials_per_cpu_s']:.0f} trials per "
          f"CPU second; ratio {figures['ratio']:.4f}")
    print(orjson.dumps(figures).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
