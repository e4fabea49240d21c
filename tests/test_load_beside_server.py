"""A long ``fhirstudy load`` into SQLite and a server writing to the same file at the same time: the
load writes one trial per short transaction, so every server write gets in between two trials
(before, writers waiting beside a load ran into the 10 s busy timeout and answered 503)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from conftest import SAMPLES
from fhirstudy.server import close_store, create_app

FHIRSTUDY = str(Path(sys.executable).with_name("fhirstudy"))
TRIALS = 60
WRITES = 20
TOKEN = "load-beside-token"
SAMPLE = SAMPLES / "NCT02513394.xml"  # PALLAS: 233 sites, about 240 resources a trial


@pytest.fixture
def records(tmp_path) -> Path:
    if not SAMPLE.exists():
        pytest.skip(f"registry samples not found at {SAMPLES}")
    text = SAMPLE.read_text()
    body = text[text.index("<clinical_study"):]
    path = tmp_path / "trials.xml"
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<search_results>\n' + "\n".join(
        body.replace("NCT02513394", f"NCT8{n:07d}") for n in range(TRIALS)) + "\n</search_results>\n")
    return path


def test_server_writes_get_in_while_a_load_runs(tmp_path, records):
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    app = create_app({"DATABASE_URL": db, "WRITE_TOKEN": TOKEN, "SEARCH_CACHE_BYTES": 0})
    client = app.test_client()
    load = subprocess.Popen([FHIRSTUDY, "load", str(records), "--db", db, "-q", "--jobs", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while client.get("/ResearchStudy?_summary=count").get_json().get("total", 0) < 5:
            assert load.poll() is None and time.monotonic() < deadline, "the load did not start storing"
            time.sleep(0.05)
        statuses, during = [], 0
        for n in range(WRITES):
            location = {"resourceType": "Location", "id": f"beside-{n}", "status": "active", "name": f"Site {n}"}
            running = load.poll() is None
            response = client.put(f"/Location/beside-{n}", data=orjson.dumps(location),
                                  headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json"})
            statuses.append(response.status_code)
            during += running and load.poll() is None  # the load was running before and after this write
        _, stderr = load.communicate(timeout=600)
    finally:
        if load.poll() is None:
            load.kill()
        close_store(app)
    assert statuses == [201] * WRITES, statuses
    assert during >= WRITES // 2, f"only {during} writes ran beside the load; make it longer"
    assert load.returncode == 0, stderr
    assert stderr.splitlines()[-1].startswith(f"loaded {TRIALS} trials")
