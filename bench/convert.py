"""Conversion throughput: trials per second end to end (read, map, validate, write), beside the cost
of just parsing the same input, measured in the same run, and peak memory.

    python bench/convert.py [--records 20000] [--jobs 1 2] [--samples ../shared/ctgov-samples]

The input is the real ClinicalTrials.gov samples (API v2 JSON, legacy XML, CSV export) replicated
with fresh NCT numbers to ``--records`` records in three registry-sized files: an NDJSON of API v2
studies (gzip), one XML file of many ``<clinical_study>`` records, and one CSV export. Each run is a
separate ``fhirstudy convert`` process, so its peak memory (max RSS) is its own.

Then the same records split in two groups, each converted on its own (``--jobs`` first value)
beside its own parse-only baseline: the trials with posted results (an API v2 ``resultsSection``,
a legacy ``<clinical_results>``: Group, Evidence and Composition besides the protocol, so larger)
and the others (the CSV export carries no results); each with trials/s, resources and bytes of
FHIR JSON per trial (the Bundles ``convert -o DIR`` wrote).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SAMPLES = ROOT.parent / "shared" / "ctgov-samples"
TARGET_PER_SECOND = 650  # the whole registry (~560,000 studies) in under 15 minutes


def _nct(n: int) -> str:
    return f"NCT9{n:07d}"


GROUPS = ("with results", "without results")


def _has_results(kind: str, template) -> bool:
    """Whether a sample record carries posted results (the CSV export never does)."""
    if kind == "json":
        return "resultsSection" in template
    return kind == "xml" and "<clinical_results>" in template


def build_inputs(samples: Path, records: int, out: Path, group: str | None = None) -> dict[str, int]:
    """Write the replicated inputs into ``out``; returns records per file. With ``group`` ("with
    results" / "without results"), only that group's records of the same ``records``-record mix
    (same NCT numbers)."""
    def wanted(kind: str, template) -> bool:
        return group is None or _has_results(kind, template) == (group == GROUPS[0])

    jsons = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(samples.glob("*.json"))]
    xmls = [p.read_text(encoding="utf-8") for p in sorted(samples.glob("*.xml"))]
    with open(samples / "ctgov-export-mixed.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    header, csv_rows = rows[0], rows[1:]
    share = {"json": records * 6 // 10, "xml": records * 2 // 10}
    share["csv"] = records - share["json"] - share["xml"]
    n = 0
    written = dict.fromkeys(share, 0)
    with gzip.open(out / "studies.ndjson.gz", "wt", encoding="utf-8") as f:
        for i in range(share["json"]):
            template = jsons[i % len(jsons)]
            n += 1
            if not wanted("json", template):
                continue
            study = json.loads(json.dumps(template))
            study["protocolSection"]["identificationModule"]["nctId"] = _nct(n - 1)
            f.write(json.dumps(study, ensure_ascii=False) + "\n")
            written["json"] += 1
    bodies = [re.sub(r"<\?xml[^>]*\?>", "", x) for x in xmls]
    with open(out / "studies.xml", "w", encoding="utf-8") as f:
        f.write("<search_results>\n")
        for i in range(share["xml"]):
            body = bodies[i % len(bodies)]
            n += 1
            if wanted("xml", body):
                f.write(re.sub(r"<nct_id>NCT\d+</nct_id>", f"<nct_id>{_nct(n - 1)}</nct_id>", body, count=1))
                written["xml"] += 1
        f.write("</search_results>\n")
    nct_col = header.index("NCT Number")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    for i in range(share["csv"] if wanted("csv", None) else 0):
        row = list(csv_rows[i % len(csv_rows)])
        row[nct_col] = _nct(n)
        n += 1
        writer.writerow(row)
        written["csv"] += 1
    (out / "studies.csv").write_text(buf.getvalue(), encoding="utf-8")
    for name, kind in (("studies.ndjson.gz", "json"), ("studies.xml", "xml"), ("studies.csv", "csv")):
        if not written[kind]:
            (out / name).unlink()  # an empty file would be an input error
    return written


def output_size(out_dir: Path) -> tuple[int, int, int]:
    """What ``convert -o DIR`` wrote: (trials, resources, bytes of FHIR JSON)."""
    trials = resources = size = 0
    for path in out_dir.glob("*.json"):
        data = path.read_bytes()
        trials, resources, size = trials + 1, resources + len(json.loads(data).get("entry", [])), size + len(data)
    return trials, resources, size


def parse_only(inputs: Path) -> tuple[int, float]:
    """The baseline: read and parse every record (the readers, no schema, mapping or validation)."""
    code = ("import sys, time; from fhirstudy.sources import iter_raw; t=time.perf_counter(); "
            "n=sum(1 for _ in iter_raw([sys.argv[1]])); print(n, time.perf_counter()-t)")
    out = subprocess.run([sys.executable, "-c", code, str(inputs)], capture_output=True, text=True, check=True)
    n, seconds = out.stdout.split()
    return int(n), float(seconds)


def convert(inputs: Path, jobs: int, out_dir: Path) -> tuple[float, int, str]:
    """One ``fhirstudy convert`` run: wall seconds, peak RSS in MiB (of that process and its
    workers), and the summary line."""
    shutil.rmtree(out_dir, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "fhirstudy.cli", "convert", str(inputs), "-o", str(out_dir),
                           "--quiet", "--jobs", str(jobs)], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
    return seconds, max(peak, before) // 1024, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        share = build_inputs(args.samples, args.records, inputs)
        size = sum(p.stat().st_size for p in inputs.iterdir()) / 2**20
        print(f"input: {args.records} records ({share}), {size:.1f} MiB on disk, {os.cpu_count()} CPUs")
        n, parse_s = parse_only(inputs)
        print(f"parse only (baseline)   : {n / parse_s:8.0f} records/s  ({n} records in {parse_s:.1f} s)")
        for jobs in args.jobs:
            seconds, peak, summary = convert(inputs, jobs, Path(tmp) / f"out-{jobs}")
            rate = n / seconds
            print(f"convert --jobs {jobs}        : {rate:8.0f} trials/s  ({seconds:.1f} s, peak RSS {peak} MiB, "
                  f"{rate / (n / parse_s):.2f}x of parse-only, {rate / TARGET_PER_SECOND:.2f}x of the "
                  f"{TARGET_PER_SECOND}/s target)  [{summary}]")
        for group in GROUPS:
            _group_run(args, Path(tmp) / group.replace(" ", "-"), group, args.jobs[0])


def _group_run(args: argparse.Namespace, work: Path, group: str, jobs: int) -> None:
    """One group of the mix (with / without results) on its own: parse-only, convert, sizes."""
    inputs = work / "in"
    inputs.mkdir(parents=True)
    share = build_inputs(args.samples, args.records, inputs, group)
    n, parse_s = parse_only(inputs)
    seconds, _, summary = convert(inputs, jobs, work / "out")  # (max RSS is of every run so far: left out)
    trials, resources, size = output_size(work / "out")
    rate = n / seconds
    print(f"{group:<16}: {n} records ({share}); parse only {n / parse_s:8.0f} records/s, convert --jobs {jobs} "
          f"{rate:6.0f} trials/s ({rate / (n / parse_s):.2f}x of parse-only); "
          f"{resources / max(trials, 1):.1f} resources and {size / max(trials, 1) / 1024:.1f} KiB per trial  [{summary}]")


if __name__ == "__main__":
    main()
