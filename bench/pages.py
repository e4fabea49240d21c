"""Web page render time on the server: each page asked for as HTML, beside the same request as
FHIR JSON (the baseline, same run, same app), in-process through the WSGI app (no network, no
gunicorn: the server's own time per request).

    python bench/pages.py --url sqlite:///bench.db          # an already loaded database
    python bench/pages.py --studies 2000                    # generate and load (bench/search.py) first
    python bench/pages.py --url ... --repeat 100 --json out.json

Pages: the search page (``condition=breast-cancer``, 20 a page), a search near a place
(every study with a site within 100 mi of ZIP 02114, ``site.near``: adds the nearest-site search), a study page (the first
breast cancer study: many criteria and sites), a study page with posted results (when the
database holds one), and "Check a patient" (the HER2-positive patient of tests/data/patients,
posted as the form does, beside the same ``$match`` as FHIR JSON). Each is measured with the
search-response cache on (the app's default) and off (``SEARCH_CACHE_BYTES`` 0: every request
searches). Reported: ms p50 / p99 and response bytes. Targets (issue #17): a page under 100 KB
and under 50 ms at 100,000 studies.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search  # noqa: E402  (bench/search.py: generation and loading)

ROOT = Path(__file__).resolve().parent.parent
PATIENT = ROOT / "tests" / "data" / "patients" / "her2-positive-metastatic-breast.json"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
FHIR = {"Accept": "application/fhir+json"}
TARGET_MS, TARGET_BYTES = 50.0, 100_000


def _study_paths(client) -> list[tuple[str, str]]:
    first = client.get("/ResearchStudy?condition=breast-cancer&_count=1&_elements=id", headers=FHIR).get_json()
    paths = [("study page", f"/ResearchStudy/{first['entry'][0]['resource']['id']}")] if first.get("entry") else []
    report = client.get("/Composition?_count=1&_elements=subject", headers=FHIR).get_json()
    for entry in report.get("entry") or []:
        subject = entry["resource"]["subject"]
        subject = subject[0] if isinstance(subject, list) else subject
        paths.append(("study page with results", "/" + subject["reference"]))
    return paths


def _time(call, repeat: int) -> dict:
    for _ in range(3):
        response = call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (response.status_code, response.get_data()[:300])
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
            "bytes": len(response.get_data())}


def run(url: str, repeat: int, cache: bool) -> list[dict]:
    """The figures of every page, as HTML and as FHIR JSON, on the database at ``url``."""
    from fhirstudy.server import close_store, create_app

    app = create_app({"DATABASE_URL": url, "SEARCH_CACHE_BYTES": 64 * 2**20 if cache else 0})
    client = app.test_client()
    pages = [("search page", "/ResearchStudy?condition=breast-cancer&_count=20"),
             ("search near a place", "/ResearchStudy?site.near=42.3611|-71.0682|100|mi&_count=20")]
    pages += _study_paths(client)
    for _, path in pages:  # what the first requests load, then frozen as a gunicorn worker does (server/wsgi.py)
        client.get(path, headers=BROWSER)
    gc.freeze()
    rows = []
    for name, path in pages:
        html = _time(lambda: client.get(path, headers=BROWSER), repeat)
        fhir = _time(lambda: client.get(path, headers=FHIR), repeat)
        rows.append({"page": name, "path": path, "html": html, "fhir_json": fhir})
    patient = PATIENT.read_text()
    parameters = json.dumps({"resourceType": "Parameters", "parameter": [
        {"name": "trialMatchClinicalData", "resource": json.loads(patient)}]})
    html = _time(lambda: client.post("/ResearchStudy/$match", data={"patient": patient}, headers=BROWSER,
                                     content_type="multipart/form-data"), max(5, repeat // 5))
    fhir = _time(lambda: client.post("/ResearchStudy/$match", data=parameters,
                                     headers={**FHIR, "Content-Type": "application/fhir+json"}), max(5, repeat // 5))
    rows.append({"page": "check a patient", "path": "POST /ResearchStudy/$match", "html": html, "fhir_json": fhir})
    close_store(app)
    gc.unfreeze()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="database URL of a loaded database (else --studies are generated)")
    parser.add_argument("--studies", type=int, default=2000, help="studies to generate when no --url (default 2000)")
    parser.add_argument("--repeat", type=int, default=50, help="requests per page and format (default 50)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    url, loaded = args.url, None
    if not url:
        folder = Path(tempfile.mkdtemp(prefix="fhirstudy-pages-"))
        url = f"sqlite:///{folder / 'pages.db'}"
        loaded = search.load(url, args.studies)
        print(f"loaded {loaded['studies']} studies ({loaded['resources']} resources) in {loaded['seconds']:.0f} s into {url}")
    figures = {"url": url, "loaded": loaded, "cached": run(url, args.repeat, True), "uncached": run(url, args.repeat, False)}
    for mode in ("cached", "uncached"):
        print(f"\n{mode} search responses ({'the app default' if mode == 'cached' else 'SEARCH_CACHE_BYTES 0'})")
        print(f"{'page':26} {'HTML p50':>9} {'p99':>8} {'bytes':>8}   {'JSON p50':>9} {'p99':>8} {'bytes':>9}")
        for row in figures[mode]:
            h, j = row["html"], row["fhir_json"]
            flag = "" if h["p99_ms"] < TARGET_MS and h["bytes"] < TARGET_BYTES else "  (over a target)"
            print(f"{row['page']:26} {h['p50_ms']:8.2f}ms {h['p99_ms']:6.2f}ms {h['bytes']:8d}   "
                  f"{j['p50_ms']:8.2f}ms {j['p99_ms']:6.2f}ms {j['bytes']:9d}{flag}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
