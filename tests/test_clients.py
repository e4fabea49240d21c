"""Real FHIR clients against a running fhirstudy (real HTTP on 127.0.0.1, a free port): fhirpy and
fhirclient (PyPI, in the ``test`` extra) and fhir-kit-client (npm, run with Node.js; the test
installs it once into a cache folder).  Each searches, follows the paging links and reads.

A client that cannot be installed is skipped with the reason.  fhirclient 4.x ships R4 models,
which refuse R5 ResearchStudy fields, so it is used through its server object (``request_json``),
as an R4 client meeting an R5 server would be.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from _server_fixtures import sample_resources, serve_in_thread
from fhirstudy.server import STORE_EXTENSION, close_store, create_app

FHIR_KIT_CLIENT = "fhir-kit-client@2.0.3"
NPM_CACHE = Path(os.environ.get("FHIRSTUDY_NPM_CACHE", Path.home() / ".cache" / "fhirstudy-test-npm"))
SCRIPT = Path(__file__).resolve().parent / "clients" / "fhir_kit_client.mjs"
BREAST = ["rs-1", "rs-3"]  # sample studies with condition breast-cancer, in id order


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    """fhirstudy with the sample resources, served over real HTTP (threaded werkzeug server)."""
    db = tmp_path_factory.mktemp("clients") / "clients.db"
    app = create_app({"DATABASE_URL": f"sqlite:///{db}"})
    app.extensions[STORE_EXTENSION].put_many(sample_resources())
    with serve_in_thread(app) as url:
        yield url
    close_store(app)


def test_fhirpy(base_url):
    fhirpy = pytest.importorskip("fhirpy", reason="fhirpy is not installed (pip install -e '.[test]')")
    client = fhirpy.SyncFHIRClient(base_url)
    search = client.resources("ResearchStudy").search(condition="breast-cancer").limit(1)
    # (fhirpy's count() adds Aidbox's _totalMethod, which a FHIR server answers with 400: read the
    # total from the searchset instead)
    assert search.fetch_raw().total == 2
    studies = search.fetch_all()  # follows the next links, one study per page
    assert [s.id for s in studies] == BREAST
    first = client.reference("ResearchStudy", "rs-1").to_resource()
    assert first["title"] == "HER2 Negative Breast Cancer Study of Drug A"
    assert first["meta"]["versionId"] == "1"
    sorted_titles = client.resources("ResearchStudy").search(status="active").sort("-title").fetch()
    assert [s.id for s in sorted_titles] == ["rs-1", "rs-3"]
    included = client.resources("ResearchStudy").search(_id="rs-1").include("ResearchStudy", "protocol").fetch_raw()
    assert {e["resource"]["id"]: e["search"]["mode"] for e in included.entry} == {"rs-1": "match", "pd-1": "include"}


def test_fhirclient(base_url):
    server_module = pytest.importorskip("fhirclient.server", reason="fhirclient is not installed (pip install -e '.[test]')")
    server = server_module.FHIRServer(None, base_uri=base_url + "/")
    bundle = server.request_json("ResearchStudy?condition=breast-cancer&_count=1")
    assert bundle["total"] == 2
    seen = []
    while True:
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            break
        bundle = server.request_json(following[0].replace(base_url + "/", ""))
    assert seen == BREAST
    assert server.request_json("ResearchStudy/rs-3")["title"] == "Breast imaging trial"
    metadata = server.request_json("metadata")
    assert metadata["fhirVersion"] == "5.0.0"


@pytest.fixture(scope="module")
def fhir_kit_client():
    """Node.js with fhir-kit-client installed (once) under NPM_CACHE; skip saying what is missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for fhir-kit-client")
    modules = NPM_CACHE / "node_modules"
    if not (modules / "fhir-kit-client" / "package.json").exists():
        NPM_CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix",
                               str(NPM_CACHE), FHIR_KIT_CLIENT], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"npm could not install {FHIR_KIT_CLIENT}: {done.stderr[-1000:]}")
    return modules


def test_fhir_kit_client(base_url, fhir_kit_client):
    done = subprocess.run(["node", str(SCRIPT), base_url, str(fhir_kit_client / "fhir-kit-client")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["total"] == 2
    assert result["pages"] == [[rid] for rid in BREAST]
    assert result["read"]["id"] == "rs-1" and result["read"]["resourceType"] == "ResearchStudy"
