"""Benchmark: resources per second pushed into the peer FHIR server by ``fhirstudy push``, next to
the peer's own rate for the same transaction Bundles posted directly, in the same run.

    bench/push.py [--fhir r4|r5] [--copies 8] [--chunk 20] [--url URL]

Without --url it starts the peer (../shared/peer-fhir/start-peer.sh) on a free port and stops it.
The trials are the seeds and the ClinicalTrials.gov samples, copied ``--copies`` times under new
ids and identifiers. "direct" posts the exact bundles the push sends into an empty store (one
transaction per chunk, plain requests, no reads); "push" is the whole push (read + plan + send).
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PEER = ROOT.parent / "shared" / "peer-fhir"

from fhirstudy.pipeline import convert  # noqa: E402
from fhirstudy.push import FhirClient, push_trials  # noqa: E402
from fhirstudy.push.push import plan_trial, prepare_trial  # noqa: E402


def _copies(trials: list[list[dict]], n: int) -> list[list[dict]]:
    out = []
    for k in range(n):
        for trial in trials:
            text = json.dumps(trial)
            sid = trial[0]["id"]
            text = text.replace(f'"{sid}', f'"{sid}c{k}').replace(f'/{sid}', f'/{sid}c{k}')
            for ident in trial[0].get("identifier", []):
                text = text.replace(f'"value": "{ident["value"]}"', f'"value": "{ident["value"]}-c{k}"')
            out.append(json.loads(text))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fhir", choices=("r4", "r5"), default="r4")
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=20)
    ap.add_argument("--url")
    args = ap.parse_args()
    inputs = [ROOT / "seeds", *sorted(p for p in (PEER.parent / "ctgov-samples").glob("*") if p.suffix in (".json", ".xml", ".csv"))]
    base = [[e["resource"] for e in c.bundle["entry"]] for c in convert(inputs) if c.ok]
    trials = _copies(base, args.copies)
    port = None
    url = args.url
    if not url:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        subprocess.run([str(PEER / "start-peer.sh"), str(port), "--fhir", args.fhir], check=True, capture_output=True)
        url = f"http://127.0.0.1:{port}"
    try:
        client = FhirClient(url)
        version = client.fhir_version()
        prepared = [prepare_trial(t, version) for t in trials]
        resources = sum(len(p.resources) for p in prepared)
        bundles = []
        for i in range(0, len(prepared), args.chunk):
            entries = [e for p in prepared[i:i + args.chunk] for e in plan_trial(p, {}).entries]
            bundles.append({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        session = requests.Session()
        rates = {}
        for name in ("direct", "push", "direct", "push"):
            session.post(f"{url}/$expunge").raise_for_status()
            started = time.perf_counter()
            if name == "direct":
                for b in bundles:
                    session.post(url, data=json.dumps(b), headers={"Content-Type": "application/fhir+json"}).raise_for_status()
            else:
                report = push_trials(client, trials, chunk_trials=args.chunk)
                assert report.counts["failed"] == 0 and report.resources["created"] == resources
            rates.setdefault(name, []).append(resources / (time.perf_counter() - started))
        session.close()
        client.close()
        direct, pushed = max(rates["direct"]), max(rates["push"])
        print(f"FHIR {version}: {len(trials)} trials, {resources} resources, {len(bundles)} transactions")
        print(f"direct POST of the same bundles: {direct:8.0f} resources/s")
        print(f"fhirstudy push (read+plan+send): {pushed:8.0f} resources/s  ({100 * pushed / direct:.0f}% of direct)")
    finally:
        if port:
            subprocess.run([str(PEER / "stop-peer.sh"), str(port)], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
