"""Push targets for the push tests: the peer FHIR server (R4 and R5, started once per session with
../shared/peer-fhir/start-peer.sh on a free port) and fhirstudy's own server (served with werkzeug
in a thread), plus the trials of the seeds and the samples.

Import the fixtures a module uses: ``from _peer_fixtures import peer_r4, peer_r5, own_server, all_trials``.
The peer directory is ``$FHIRSTUDY_PEER_DIR`` (default ``../shared/peer-fhir`` beside the repo);
without Node.js, npm or the peer the peer tests are skipped, saying so.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

PEER_DIR = Path(os.environ.get("FHIRSTUDY_PEER_DIR", Path(__file__).resolve().parents[2] / "shared" / "peer-fhir"))
SEEDS = Path(__file__).resolve().parents[1] / "seeds"
SAMPLES = PEER_DIR.parent / "ctgov-samples"
WRITE_TOKEN = "push-test-token"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_inputs() -> list[Path]:
    """The seeds folder and the ClinicalTrials.gov samples (json, xml, csv)."""
    samples = sorted(p for p in SAMPLES.glob("*") if p.suffix in (".json", ".xml", ".csv")) if SAMPLES.exists() else []
    return [SEEDS, *samples]


@dataclass
class Target:
    """A FHIR server to push into: its base URL, version, token, and how to empty it."""

    name: str
    url: str
    fhir_version: str
    token: str | None = None
    app: object = None

    def wipe(self) -> None:
        """Remove every resource (the peer's $expunge; a fresh database for fhirstudy's server)."""
        if self.app is None:
            requests.post(f"{self.url}/$expunge", timeout=30).raise_for_status()
        else:
            from fhirstudy.server import close_store, init_store

            close_store(self.app)
            db = Path(self.app.config["DATABASE_URL"].removeprefix("sqlite:///"))
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
            init_store(self.app)


def _peer(fhir: str):
    script = PEER_DIR / "start-peer.sh"
    if not script.exists():
        pytest.skip(f"peer FHIR server not found at {PEER_DIR} (set FHIRSTUDY_PEER_DIR)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("the peer FHIR server needs Node.js and npm, which are not on this machine")
    port = free_port()
    started = subprocess.run([str(script), str(port), "--fhir", fhir], capture_output=True, text=True, timeout=600)
    if started.returncode != 0:
        pytest.skip(f"the peer FHIR server did not start: {started.stderr[-500:]}")
    try:
        yield Target(f"peer-{fhir}", f"http://127.0.0.1:{port}", "4.0" if fhir == "r4" else "5.0")
    finally:
        subprocess.run([str(PEER_DIR / "stop-peer.sh"), str(port)], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def peer_r4():
    """The peer in R4 mode (session-wide; wipe it before use)."""
    yield from _peer("r4")


@pytest.fixture(scope="session")
def peer_r5():
    """The peer in R5 mode (session-wide; wipe it before use)."""
    yield from _peer("r5")


@pytest.fixture(scope="session")
def own_server(tmp_path_factory):
    """fhirstudy's own server (R5) with a WRITE_TOKEN, on a free port, served from a thread."""
    from werkzeug.serving import make_server

    from fhirstudy.server import close_store, create_app

    db = tmp_path_factory.mktemp("own-server") / "store.db"
    app = create_app({"DATABASE_URL": f"sqlite:///{db}", "WRITE_TOKEN": WRITE_TOKEN, "TESTING": True})
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Target("fhirstudy", f"http://127.0.0.1:{server.server_port}", "5.0", WRITE_TOKEN, app)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        close_store(app)


@pytest.fixture(scope="session")
def all_trials() -> list[list[dict]]:
    """Every trial of the seeds and the samples as R5 resources (ResearchStudy first)."""
    from fhirstudy.pipeline import convert

    trials = [[e["resource"] for e in c.bundle["entry"]] for c in convert(sample_inputs()) if c.ok]
    assert len(trials) >= 10
    return trials
