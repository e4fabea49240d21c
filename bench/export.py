"""Bulk Data export rate: a system-level export (every resource, NDJSON per type) of a store of
generated studies, beside a plain read of the same rows in the same run.

    python bench/export.py [--studies 10000]
    python bench/export.py --url sqlite:///bench100k.db      # an already loaded database

1. Studies are generated and loaded as ``bench/search.py`` does, unless ``--url`` names a loaded
   database.
2. Baseline: one process reads every live resource's stored bytes (``SELECT content FROM resource
   WHERE NOT deleted``, streamed), decompresses them (the store's codec) and throws them away.
3. Export: another process runs :func:`fhirstudy.export.writer.write_export` for the whole store
   into a temporary directory (and ``ResearchStudy``-level, following references, after it).
   Each stage runs in a process of its own so that its peak RSS is its own.

Reported per stage: seconds, resources/s, MB/s of NDJSON, peak RSS; the export's rate as a share
of the plain read's.
"""
from __future__ import annotations

import argparse
import json
import resource as rlimit
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _stage(stage: str, url: str) -> dict:
    """Run one stage in this process and return its figures."""
    from fhirstudy.store import open_store

    store = open_store(url)
    began = time.perf_counter()
    count = size = 0
    if stage == "read":
        with store.engine.connect() as conn:
            cursor = conn.connection.cursor()
            cursor.execute("SELECT content FROM resource WHERE NOT deleted")
            while rows := cursor.fetchmany(1000):
                count += len(rows)
                size += sum(len(store.codec.decode(r[0])) + 1 for r in rows)  # the JSON, as export reads it
    else:
        from fhirstudy.export.request import ExportRequest
        from fhirstudy.export.writer import write_export
        from fhirstudy.service import SearchService

        with tempfile.TemporaryDirectory(prefix="fhirstudy-bench-export-") as tmp:
            level = "system" if stage == "export" else "ResearchStudy"
            result = write_export(store, SearchService(store, store.registry, 0), ExportRequest(level=level),
                                  Path(tmp))
            count = sum(f.count for f in result.output)
            size = sum((Path(tmp) / f.name).stat().st_size for f in result.output)
    seconds = time.perf_counter() - began
    store.close()
    return {"stage": stage, "seconds": round(seconds, 2), "resources": count, "mb": round(size / 2**20, 1),
            "resources_per_s": round(count / seconds), "mb_per_s": round(size / 2**20 / seconds, 1),
            "peak_rss_mb": round(rlimit.getrusage(rlimit.RUSAGE_SELF).ru_maxrss / 1024)}


def run(url: str) -> dict:
    out = {}
    for stage in ("read", "export", "export-studies"):
        done = subprocess.run([sys.executable, __file__, "--stage", stage, "--url", url], check=True,
                              capture_output=True, text=True)
        out[stage] = json.loads(done.stdout)
        r = out[stage]
        share = r["resources_per_s"] / out["read"]["resources_per_s"]
        print(f"{stage:15s} {r['resources']:9d} resources {r['seconds']:8.1f} s {r['resources_per_s']:8d}/s "
              f"{r['mb_per_s']:7.1f} MB/s  peak RSS {r['peak_rss_mb']:5d} MB  {share:5.0%} of the plain read",
              file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--url", help="an already loaded database (then nothing is generated)")
    parser.add_argument("--stage", choices=("read", "export", "export-studies"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(_stage(args.stage, args.url)))
        return
    if args.url:
        print(json.dumps(run(args.url), indent=1))
        return
    import search  # noqa: E402  (bench/search.py: generation and loading)

    with tempfile.TemporaryDirectory(prefix="fhirstudy-bench-export-") as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        loaded = search.load(url, args.studies)
        print(f"loaded {loaded['studies']} studies ({loaded['resources']} resources) in {loaded['seconds']:.0f} s",
              file=sys.stderr, flush=True)
        print(json.dumps({"load": loaded, **run(url)}, indent=1))


if __name__ == "__main__":
    main()
