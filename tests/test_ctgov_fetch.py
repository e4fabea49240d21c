"""``fhirstudy fetch`` against the local stand-in for the ClinicalTrials.gov API (real HTTP, real
records replicated with new NCT ids): the studies a query selects arrive converted, in files or a
store, through throttling and dropped connections; mistakes are one line."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from ctgov_standin import Registry, serve
from fhirstudy.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from fhirstudy.store import open_store

FHIRSTUDY = [sys.executable, "-m", "fhirstudy.cli"]
FAST = ["--interval", "0.001"]
BOSTON = (42.36, -71.06)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.replicated(360, seed=14)


@pytest.fixture(scope="module")
def api(registry):
    with serve(registry) as url:
        yield url


def _bundles(folder: Path) -> dict[str, list[dict]]:
    """NCT id -> the resources of each trial file of a ``-o`` folder."""
    out = {}
    for path in folder.glob("*.json"):
        resources = [e["resource"] for e in orjson.loads(path.read_bytes())["entry"]]
        study = resources[0]
        nct = next(i["value"] for i in study["identifier"] if i["system"] == "https://clinicaltrials.gov")
        out[nct] = resources
    return out


def _expected(registry: Registry, keep) -> set[str]:
    return {nct for nct in registry.ids() if keep(registry.get(nct))}


def _conditions(study: dict) -> str:
    p = study["protocolSection"]
    return " ".join(p.get("conditionsModule", {}).get("conditions", []) + [p["identificationModule"].get("briefTitle", "")]
                    + [m["term"] for m in study.get("derivedSection", {}).get("conditionBrowseModule", {}).get("meshes", [])]
                    + p.get("conditionsModule", {}).get("keywords", [])).lower()


def _miles(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 3958.8 * math.asin(math.sqrt(h))


def test_fetch_by_condition_and_status_writes_exactly_those_studies(api, registry, tmp_path, capsys):
    code = main(["fetch", "--api", api, *FAST, "--condition", "dermatitis", "--status", "RECRUITING,COMPLETED",
                 "--page-size", "40", "-o", str(tmp_path / "out"), "-q"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    assert out == ""
    want = _expected(registry, lambda s: "dermatitis" in _conditions(s)
                     and s["protocolSection"]["statusModule"]["overallStatus"] in ("RECRUITING", "COMPLETED"))
    got = _bundles(tmp_path / "out")
    assert set(got) == want and len(want) > 40          # more than one page
    for nct, resources in got.items():
        study = resources[0]
        assert study["resourceType"] == "ResearchStudy"
        assert any("dermatitis" in (c.get("text") or "").lower() for c in study["condition"]), nct
        provenance = resources[-1]
        assert provenance["resourceType"] == "Provenance" and nct in provenance["entity"][0]["what"]["display"]
    assert f"converted {len(want)}, failed 0" in err and f"(the registry lists {len(want)})" in err


def test_fetch_near_a_place_keeps_studies_with_a_site_that_close(api, registry, tmp_path, capsys):
    code = main(["fetch", "--api", api, *FAST, "--near", f"{BOSTON[0]},{BOSTON[1]},50mi", "-o", str(tmp_path / "o")])
    assert code == EXIT_OK, capsys.readouterr().err

    def near(study) -> bool:
        sites = study["protocolSection"].get("contactsLocationsModule", {}).get("locations", [])
        return any("geoPoint" in s and _miles(BOSTON, (s["geoPoint"]["lat"], s["geoPoint"]["lon"])) <= 50 for s in sites)

    want = _expected(registry, near)
    got = _bundles(tmp_path / "o")
    assert set(got) == want and want
    for resources in got.values():   # the converted sites say the same
        positions = [(r["position"]["latitude"], r["position"]["longitude"]) for r in resources
                     if r["resourceType"] == "Location" and "position" in r]
        assert any(_miles(BOSTON, p) <= 50 for p in positions)


def test_fetch_into_a_store_then_again_changes_nothing(api, registry, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'f.db'}"
    ids = registry.ids()[:7]
    args = ["fetch", "--api", api, *FAST, "--nct", ",".join(ids), "--db", db, "-q"]
    assert main(args) == EXIT_OK
    assert "new 7, updated 0, unchanged 0, failed 0" in capsys.readouterr().err
    assert main(args) == EXIT_OK
    assert "new 0, updated 0, unchanged 7, failed 0" in capsys.readouterr().err
    store = open_store(db)
    try:
        for nct in ids:
            assert store.head("ResearchStudy", nct.lower()).version == 1
    finally:
        store.close()


def test_throttling_and_dropped_connections_cost_retries_not_studies(registry, tmp_path, capsys):
    with serve(registry, throttle_every=3, retry_after=1, drop_every=5) as flaky:
        code = main(["fetch", "--api", flaky, *FAST, "--condition", "cystic fibrosis", "--page-size", "25",
                     "-o", str(tmp_path / "f"), "-q", "--report", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    want = _expected(registry, lambda s: "cystic fibrosis" in _conditions(s))
    assert set(_bundles(tmp_path / "f")) == want and len(want) > 50
    report = orjson.loads((tmp_path / "r.json").read_bytes())
    assert report["counts"]["converted"] == len(want) and report["totalCount"] == len(want)
    assert report["requests"] >= math.ceil(len(want) / 25)
    assert "429" not in err and "Traceback" not in err


def test_every_request_names_fhirstudy_and_repeats_the_first_pages_parameters(registry, tmp_path, capsys):
    fresh = Registry(registry_studies(registry, 120))
    with serve(fresh) as url:
        assert main(["fetch", "--api", url, *FAST, "--term", "study", "--page-size", "50",
                     "-o", str(tmp_path / "p")]) == EXIT_OK
    pages = [params for path, params in fresh.requests if path == "/studies"]
    assert len(pages) >= 2
    first = {k: v for k, v in pages[0].items() if k not in ("countTotal", "pageSize", "pageToken")}
    assert pages[0].get("countTotal") == "true" and "pageToken" not in pages[0]
    for later in pages[1:]:
        assert {k: v for k, v in later.items() if k not in ("countTotal", "pageSize", "pageToken")} == first
        assert later["pageToken"] and "countTotal" not in later


def registry_studies(registry: Registry, n: int) -> list[dict]:
    return [registry.get(nct) for nct in registry.ids()[:n]]


@pytest.mark.parametrize("args, says", [
    (["--status", "RECRUTING"], "--status 'RECRUTING' is not a ClinicalTrials.gov status"),
    (["--near", "boston"], "--near 'boston'"),
    (["--nct", "NCT1"], "--nct 'NCT1'"),
    (["--api", "ftp://x"], "needs http:// or https://"),
    (["--page-size", "5000"], "--page-size"),
])
def test_a_bad_option_is_one_line_and_exit_2(tmp_path, args, says):
    done = subprocess.run([*FHIRSTUDY, "fetch", *args, "-o", str(tmp_path / "x")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_an_api_that_is_not_there_or_refuses_the_query_is_one_error_line(api, tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert main(["fetch", "--api", closed, *FAST, "--condition", "x", "-o", str(tmp_path / "a")]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "cannot reach" in err and "Traceback" not in err
    assert main(["fetch", "--api", api, *FAST, "--advanced", "AREA[Nonsense", "-o", str(tmp_path / "b")]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "400" in err and "Traceback" not in err


def test_one_bad_study_is_reported_by_its_url_and_field_and_the_rest_land(registry, tmp_path, capsys):
    studies = registry_studies(registry, 30)
    bad_title, bad_status = nct_of(studies[4]), nct_of(studies[9])
    studies[4]["protocolSection"]["identificationModule"] = {"nctId": bad_title}
    studies[9]["protocolSection"]["statusModule"] = "not an object"
    with serve(Registry(studies)) as url:
        code = main(["fetch", "--api", url, *FAST, "--db", f"sqlite:///{tmp_path / 'b.db'}", "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_FAILED
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) >= 2 and "Traceback" not in err
    assert any(f"{url}/studies/{bad_title}" in line and "title" in line for line in lines), lines
    assert any(f"{url}/studies/{bad_status}" in line and "statusModule" in line for line in lines), lines
    assert "new 28, updated 0, unchanged 0, failed 2" in err


def nct_of(study: dict) -> str:
    return study["protocolSection"]["identificationModule"]["nctId"]


def test_sort_is_the_apis_order_and_stdout_carries_the_ndjson(api, registry, capsys):
    code = main(["fetch", "--api", api, *FAST, "--condition", "rosacea", "--sort", "LastUpdatePostDate:asc",
                 "--page-size", "30", "-o", "-", "-q"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    order = [next(i["value"] for i in orjson.loads(line)["entry"][0]["resource"]["identifier"]
                  if i["system"] == "https://clinicaltrials.gov") for line in out.splitlines()]
    dates = [registry.get(n)["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"] for n in order]
    assert len(order) > 30 and dates == sorted(dates)
