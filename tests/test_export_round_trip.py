"""The round trip the Bulk Data IG is for: the seeds and samples exported from fhirstudy
(``fhirstudy export``), the files loaded into a second fhirstudy database (``fhirstudy load``) and
into the peer FHIR server (R5, Medplum's engine, one transaction of PUTs), and the same searches
asked of all three over real HTTP give the same answers."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import orjson
import pytest
import requests

from _peer_fixtures import peer_r5, sample_inputs  # noqa: F401
from _server_fixtures import serve_in_thread

FHIRSTUDY = [sys.executable, "-m", "fhirstudy.cli"]
MESH = "https://www.nlm.nih.gov/mesh"
PHASES = "http://hl7.org/fhir/research-study-phase"
GROUPS = "https://fhirstudy.org/fhir/CodeSystem/condition"
# Standard R5 search parameters both servers define, over each exported type (not :text on a
# token, which the peer answers with nothing).
SEARCHES = [
    ("ResearchStudy", {}),
    ("ResearchStudy", {"condition": f"{MESH}|D001943"}),          # Breast Neoplasms
    ("ResearchStudy", {"condition": f"{MESH}|D065626"}),          # Non-alcoholic Fatty Liver Disease
    ("ResearchStudy", {"condition": f"{GROUPS}|breast-cancer,{GROUPS}|cystic-fibrosis"}),
    ("ResearchStudy", {"condition": "D003920"}),                  # any system
    ("ResearchStudy", {"phase": f"{PHASES}|phase-2"}),
    ("ResearchStudy", {"phase": f"{PHASES}|phase-3"}),
    ("ResearchStudy", {"status": "active"}),
    ("ResearchStudy", {"title:contains": "cancer"}),
    ("ResearchStudy", {"date": "ge2015-01-01"}),
    ("ResearchStudy", {"date": "lt2010-01-01"}),
    ("ResearchStudy", {"identifier": "https://clinicaltrials.gov|NCT00763412"}),
    ("Location", {}),
    ("Location", {"address-country": "United States"}),
    ("Location", {"address-city": "Boston"}),
    ("Location", {"name:contains": "hospital"}),
    ("CodeSystem", {}),
    ("CodeSystem", {"url": "https://fhirstudy.org/fhir/CodeSystem/condition"}),
    ("PlanDefinition", {}),
    ("EvidenceVariable", {}),
    ("Provenance", {}),
]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FHIRSTUDY, *args], capture_output=True, text=True, timeout=300)


def _ids(base: str, resource_type: str, params: dict) -> set[str]:
    """Every id the search matches, following the paging links."""
    found: set[str] = set()
    url, query = f"{base}/{resource_type}", {**params, "_count": "100", "_elements": "id"}
    for _ in range(100):
        response = requests.get(url, params=query, headers={"Accept": "application/fhir+json"}, timeout=30)
        assert response.status_code == 200, (resource_type, params, response.text[:500])
        page = response.json()
        found |= {e["resource"]["id"] for e in page.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"}
        following = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
        if not following:
            return found
        url, query = following[0], None
    raise AssertionError(f"{resource_type}?{urlencode(params)} pages on and on")


def _exported(folder: Path) -> list[dict]:
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    return [orjson.loads(line) for listed in manifest["output"]
            for line in (folder / listed["url"]).read_bytes().splitlines()]


def _load_into_peer(peer_url: str, resources: list[dict]) -> None:
    """The files as one transaction of PUTs (the peer has no $import): what a hospital's own
    loader does with a Bulk export."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}
    answer = requests.post(peer_url, data=orjson.dumps(bundle), timeout=120,
                           headers={"Content-Type": "application/fhir+json"})
    assert answer.status_code == 200, answer.text[:2000]


@pytest.fixture(scope="module")
def stores(tmp_path_factory, peer_r5):
    from fhirstudy.server import close_store, create_app

    folder = tmp_path_factory.mktemp("round-trip")
    first, second = f"sqlite:///{folder / 'first.db'}", f"sqlite:///{folder / 'second.db'}"
    loaded = run("load", *map(str, sample_inputs()), "--db", first, "--quiet")
    assert loaded.returncode == 0, loaded.stderr
    exported = run("export", "-o", str(folder / "bulk"), "--db", first)
    assert exported.returncode == 0, exported.stderr
    again = run("load", str(folder / "bulk"), "--db", second, "--quiet")
    assert again.returncode == 0, again.stderr
    resources = _exported(folder / "bulk")
    peer_r5.wipe()
    _load_into_peer(peer_r5.url, resources)
    apps = [create_app({"DATABASE_URL": url, "TESTING": True}) for url in (first, second)]
    try:
        with serve_in_thread(apps[0]) as one, serve_in_thread(apps[1]) as two:
            yield {"exported": resources, "fhirstudy": one, "reloaded": two, "peer": peer_r5.url}
    finally:
        for app in apps:
            close_store(app)


def test_the_export_holds_every_type_it_searches(stores):
    types = {r["resourceType"] for r in stores["exported"]}
    assert {t for t, _ in SEARCHES} <= types


@pytest.mark.parametrize("resource_type, params", SEARCHES,
                         ids=[f"{t}?{urlencode(p)}" for t, p in SEARCHES])
def test_the_same_search_has_the_same_answer_everywhere(stores, resource_type, params):
    here = _ids(stores["fhirstudy"], resource_type, params)
    assert _ids(stores["reloaded"], resource_type, params) == here
    assert _ids(stores["peer"], resource_type, params) == here
    of_type = {r["id"] for r in stores["exported"] if r["resourceType"] == resource_type}
    assert here == of_type if not params else here <= of_type
    assert here, "a search that finds nothing everywhere proves nothing"


def test_every_resource_reads_back_the_same_from_the_reloaded_store_and_the_peer(stores):
    for resource in stores["exported"]:
        path = f"{resource['resourceType']}/{resource['id']}"
        for where in ("reloaded", "peer"):
            read = requests.get(f"{stores[where]}/{path}", timeout=30).json()
            assert _content(read) == _content(resource), (where, path)


def _content(resource: dict) -> dict:
    """A resource without what every server sets for itself (meta.versionId, lastUpdated)."""
    meta = {k: v for k, v in resource.get("meta", {}).items() if k not in ("versionId", "lastUpdated", "author",
                                                                          "project", "compartment")}
    return {**{k: v for k, v in resource.items() if k != "meta"}, **({"meta": meta} if meta else {})}
