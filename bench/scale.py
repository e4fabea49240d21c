"""The cost curve: convert, load, database size and search at growing registry sizes, each figure
beside a baseline measured in the same run, and peak memory per stage.

    python bench/scale.py [--sizes 10000 100000] [--db sqlite postgresql] [--jobs 2] [--seconds 5]

For each size a synthetic registry is written: the real ClinicalTrials.gov API v2 samples
(``../shared/ctgov-samples/*.json``) replicated with new NCT numbers, org study ids, start and
update dates spread over ten years, and sites moved (city, ZIP and coordinates of the site taken
from another replica's site), one NDJSON (gzip) of API v2 studies. Then:

- **convert**: ``fhirstudy convert IN -o OUT.ndjson --jobs N`` (baseline: reading and parsing the
  same records, no schema, mapping or validation);
- **load**: ``fhirstudy load IN --db URL --jobs N`` into an empty database (baseline: the convert
  rate of the same run: what storing costs on top);
- **size**: database bytes per study (SQLite: the file and its WAL; PostgreSQL: ``pg_database_size``);
- **search**: ``GET /ResearchStudy?condition=...&_count=20`` with ``bench/search.py``'s driver, with
  the response cache and without it (``--cache-mb 0``), beside the fixed-body baseline.

Each stage is its own process, so its peak RSS is its own (max RSS of the children). The
560,000-study run is done once by hand (``--sizes 560000``; about an hour per stage at today's
rates) and its figures kept in the README; ``make bench`` runs the smaller sizes.
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import gzip
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search as search_bench  # noqa: E402  (bench/search.py: serve, drive, baseline)
from convert import parse_only  # noqa: E402  (bench/convert.py: the parse-only baseline)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "ctgov-samples"
FHIRSTUDY = [sys.executable, "-m", "fhirstudy.cli"]
QUERY_CONDITION = "condition=atopic-dermatitis"   # a group the samples hold (the dermatitis trial, 42 sites)


def write_registry(samples: Path, count: int, out: Path, seed: int = 15) -> int:
    """``count`` replicas of the samples as one gzipped NDJSON of API v2 studies; bytes written."""
    rng = random.Random(seed)
    studies = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(samples.glob("*.json"))]
    sites = [s for study in studies for s in study["protocolSection"].get("contactsLocationsModule", {})
             .get("locations", [])]
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=1) as f:
        for n in range(count):
            study = copy.deepcopy(studies[n % len(studies)])
            _replicate(study, n, rng, sites)
            f.write(json.dumps(study, ensure_ascii=False) + "\n")
    return out.stat().st_size


def _replicate(study: dict, n: int, rng: random.Random, sites: list[dict]) -> None:
    p = study["protocolSection"]
    ident = p["identificationModule"]
    ident["nctId"] = f"NCT7{n:07d}"
    ident.setdefault("orgStudyIdInfo", {})["id"] = f"SCALE-{n:07d}"
    shift = dt.timedelta(days=rng.randrange(0, 3650))
    status = p.get("statusModule", {})
    for key, value in list(status.items()):
        if isinstance(value, dict) and isinstance(value.get("date"), str):
            value["date"] = _moved(value["date"], shift)
        elif key.endswith("Date") and isinstance(value, str):
            status[key] = _moved(value, shift)
    for site in p.get("contactsLocationsModule", {}).get("locations", []):
        other = rng.choice(sites)
        for key in ("city", "state", "zip", "country", "geoPoint"):
            if key in other:
                site[key] = copy.deepcopy(other[key])
        if "geoPoint" in site:
            site["geoPoint"] = {"lat": round(site["geoPoint"]["lat"] + rng.uniform(-0.05, 0.05), 4),
                                "lon": round(site["geoPoint"]["lon"] + rng.uniform(-0.05, 0.05), 4)}


def _moved(date: str, shift: dt.timedelta) -> str:
    """A YYYY-MM(-DD) date moved back by ``shift`` (its precision kept)."""
    parts = date.split("-")
    try:
        day = dt.date(int(parts[0]), int(parts[1]) if len(parts) > 1 else 1, int(parts[2]) if len(parts) > 2 else 1)
    except (ValueError, IndexError):
        return date
    moved = (day - shift).isoformat()
    return moved[:len(date)] if len(parts) < 3 else moved


def _run(args: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """One process: wall seconds, peak RSS in MiB of it (and its workers), the last stderr line."""
    t = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args[:4])}... failed: {last}")
    return seconds, peak, last


def one_size(size: int, kinds: list[str], args, work: Path) -> dict:
    registry = work / f"registry-{size}.ndjson.gz"
    written = write_registry(args.samples, size, registry)
    print(f"\n== {size} studies ({written / 2**20:.0f} MiB gzipped input)", flush=True)
    n, parse_s = parse_only(registry)
    seconds, peak, summary = _run([*FHIRSTUDY, "convert", str(registry), "-o", str(work / "out.ndjson"),
                                   "--quiet", "--jobs", str(args.jobs)])
    (work / "out.ndjson").unlink(missing_ok=True)
    convert_rate = n / seconds
    out = {"studies": n, "parse_per_s": n / parse_s,
           "convert": {"per_s": convert_rate, "seconds": seconds, "peak_mib": peak, "summary": summary}}
    print(f"convert --jobs {args.jobs}: {convert_rate:6.0f} trials/s ({seconds:.0f} s, peak {peak} MiB; "
          f"{convert_rate / (n / parse_s):.2f}x of parse-only {n / parse_s:.0f}/s)", flush=True)
    for kind in kinds:
        server = None
        if kind == "sqlite":
            path = work / f"scale-{size}.db"
            url = f"sqlite:///{path}"
        else:
            server = search_bench._postgres()
            url, path = server.get_uri(), None
        try:
            seconds, peak, summary = _run([*FHIRSTUDY, "load", str(registry), "--db", url, "--quiet",
                                           "--jobs", str(args.jobs)])
            size_bytes = search_bench._size(url, path)
            load_rate = n / seconds
            print(f"[{kind}] load: {load_rate:6.0f} studies/s ({seconds:.0f} s, peak {peak} MiB; "
                  f"{load_rate / convert_rate:.2f}x of convert), {size_bytes / n / 1024:.1f} KB/study "
                  f"({size_bytes / 1e6:.0f} MB)", flush=True)
            search_bench.QUERY = f"/ResearchStudy?{QUERY_CONDITION}&_count=20"
            searched = search_bench._bench_search(kind, url, args)
            out[kind] = {"load": {"per_s": load_rate, "seconds": seconds, "peak_mib": peak, "summary": summary},
                         "kb_per_study": size_bytes / n / 1024, "db_bytes": size_bytes, "search": searched}
        finally:
            if path is not None:
                for extra in path.parent.glob(path.name + "*"):
                    extra.unlink()
            if server is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    server.cleanup()
                shutil.rmtree(server.pgdata.parent, ignore_errors=True)
    registry.unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    parser.add_argument("--work", type=Path, help="a folder for the databases (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="fhirstudy-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    report = {"cpus": os.cpu_count(), "jobs": args.jobs, "sizes": {}}
    try:
        for size in args.sizes:
            report["sizes"][size] = one_size(size, args.db, args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
