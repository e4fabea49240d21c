"""``POST /ResearchStudy/$match`` throughput on a store of generated studies, beside a plain
condition search (``GET /ResearchStudy?condition=breast-cancer&_count=20``) in the same run.

    python bench/match.py [--studies 100000] [--seconds 10] [--connections 4]
    python bench/match.py --url sqlite:///bench.db      # drive an already loaded database

1. Studies are generated and loaded as ``bench/search.py`` does (SQLite; one in 25 from a breast
   cancer trial, the others from the other seeds and samples), unless ``--url`` names a loaded one.
2. The patient is a woman with HER2-positive metastatic breast cancer in 20 resources
   (``tests/data/patients/her2-positive-metastatic-breast.json`` and four more vital signs and
   labs), asked near Boston (``zipCode`` 02114, 100 miles) and without a place.
3. ``fhirstudy serve`` (gunicorn, ``--workers``) answers; threads here keep ``--connections``
   requests in flight for ``--seconds`` each: requests/s, p50, p99. The condition search is the
   baseline of the same run (search-response cache off, so that both do their work each time).
   Each worker builds the profiles of the studies it screens on its first ``$match`` (about 2 s
   for the 4,000 breast cancer studies): the figures are of warm workers, after
   :data:`WARM_SECONDS` of requests from twice as many connections as workers.

Target: ``$match`` p99 under 200 ms at 100,000 studies.
"""
from __future__ import annotations

import argparse
import copy
import http.client
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search  # noqa: E402  (bench/search.py: generation, loading, serving)

ROOT = Path(__file__).resolve().parent.parent
PATIENT = ROOT / "tests" / "data" / "patients" / "her2-positive-metastatic-breast.json"
TARGET_P99_MS = 200.0
WARM_SECONDS = 5.0
UCUM = "http://unitsofmeasure.org"


def patient_bundle() -> dict:
    """The test patient with four more Observations: 20 resources."""
    bundle = copy.deepcopy(json.loads(PATIENT.read_text()))
    extra = [("8480-6", 128, "mm[Hg]"), ("8462-4", 82, "mm[Hg]"), ("39156-5", 27.4, "kg/m2"), ("4548-4", 5.6, "%")]
    for n, (code, value, unit) in enumerate(extra):
        bundle["entry"].append({"fullUrl": f"urn:uuid:bench-extra-{n}", "resource": {
            "resourceType": "Observation", "id": f"bench-extra-{n}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "effectiveDateTime": "2026-11-28",
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}})
    while len(bundle["entry"]) < 20:
        bundle["entry"].append(copy.deepcopy(bundle["entry"][-1]))
        bundle["entry"][-1]["resource"]["id"] += "-again"
        bundle["entry"][-1]["fullUrl"] += "-again"
    return bundle


def body(near: bool) -> bytes:
    params = [{"name": "trialMatchClinicalData", "resource": patient_bundle()},
              {"name": "recruitmentStatus", "valueString": "recruiting,not-yet-recruiting,active-but-not-recruiting"}]
    if near:
        params += [{"name": "zipCode", "valueString": "02114"}, {"name": "travelRadius", "valueString": "100"}]
    return json.dumps({"resourceType": "Parameters", "parameter": params}).encode()


def run(url: str, args) -> dict:
    fhirstudy = str(Path(sys.executable).parent / "fhirstudy")
    process, port = search._serve([fhirstudy, "serve", "--db", url, "--port", "{port}", "--workers",
                                   str(args.workers), "--threads", "8", "--cache-mb", "0"])
    out = {}
    try:
        search._wait(port, process)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/ResearchStudy/$match", body=body(False),
                     headers={"Content-Type": "application/fhir+json"})
        answer = json.loads(conn.getresponse().read())
        out["matched"] = answer["total"]
        for near in (False, True):   # every worker builds its profiles on its first $match: warm them all
            search.drive_threads(port, "/ResearchStudy/$match", WARM_SECONDS, 2 * args.workers, body=body(near),
                                 timeout=120)
        out["condition search"] = search.drive_threads(port, search.QUERY, args.seconds, args.connections)
        for label, near in (("$match", False), ("$match near", True)):
            out[label] = search.drive_threads(port, "/ResearchStudy/$match", args.seconds, args.connections,
                                              body=body(near), timeout=60)
    finally:
        search._stop(process)
    base = out["condition search"]["requests_per_s"]
    print(f"{out['matched']} studies matched for the patient (of the generated store)", flush=True)
    for label in ("condition search", "$match", "$match near"):
        r = out[label]
        print(f"{label:17s} {r['requests_per_s']:7.1f} req/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  "
              f"{r['requests_per_s'] / base:5.0%} of the search  ({r['errors']} errors)", flush=True)
    print(f"target: $match p99 under {TARGET_P99_MS:.0f} ms", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--url", help="an already loaded database (then nothing is generated)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.url:
        print(json.dumps(run(args.url, args), indent=1))
        return
    with tempfile.TemporaryDirectory(prefix="fhirstudy-bench-match-") as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        loaded = search.load(url, args.studies)
        print(f"loaded {loaded['studies']} studies ({loaded['resources']} resources) in {loaded['seconds']:.0f} s",
              flush=True)
        print(json.dumps({"load": loaded, **run(url, args)}, indent=1))


if __name__ == "__main__":
    main()
