"""The CLI as a user runs it: real processes, real files, a real server on a real port."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import SEEDS

FHIRSTUDY = [sys.executable, "-m", "fhirstudy.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*FHIRSTUDY, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_convert_writes_one_bundle_per_trial(tmp_path):
    result = run("convert", str(SEEDS), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) == 5 and "nct06731140.json" in files
    bundle = json.loads((tmp_path / "out" / "nct06731140.json").read_text())
    assert bundle["type"] == "transaction"
    assert bundle["entry"][0]["request"] == {"method": "PUT", "url": "ResearchStudy/nct06731140"}
    assert result.stderr.strip().splitlines()[-1].startswith("converted 5, failed 0")


def test_convert_to_stdout_is_ndjson():
    result = run("convert", str(SEEDS / "002_00f1acfd3f7ab13d.txt"), "-o", "-", "--quiet")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["entry"][0]["resource"]["id"] == "nct06731140"


def test_a_malformed_file_is_reported_and_the_rest_convert(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for seed in SEEDS.iterdir():
        (inputs / seed.name).write_bytes(seed.read_bytes())
    (inputs / "005_broken.txt").write_text("A title\nA summary\nBreast Cancer\nFOO: something\n\n\n\n")
    result = run("convert", str(inputs), "-o", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 1
    assert "005_broken.txt" in result.stderr and "error" in result.stderr
    assert len(list((tmp_path / "out").iterdir())) == 5
    assert "converted 5, failed 1" in result.stderr


@pytest.mark.parametrize("args", [[], ["convert"], ["convert", "nowhere.txt", "-o", "x"], ["bogus"],
                                  ["convert", "seeds", "-o", "x", "--format", "nope"]])
def test_usage_errors_exit_2(args):
    assert run(*args, cwd=SEEDS.parent).returncode == 2


def test_validate_command(tmp_path):
    run("convert", str(SEEDS), "-o", str(tmp_path))
    good = sorted(tmp_path.glob("*.json"))
    assert run("validate", *map(str, good)).returncode == 0
    bad = tmp_path / "bad.json"
    doc = json.loads(good[0].read_text())
    doc["entry"][0]["resource"]["status"] = "bogus"
    bad.write_text(json.dumps(doc))
    result = run("validate", str(bad))
    assert result.returncode == 1 and "status" in result.stderr and "required value set" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`fhirstudy load seeds` then `fhirstudy serve` (gunicorn), as `make run` does."""
    db = f"sqlite:///{tmp_path_factory.mktemp('db') / 'fhirstudy.db'}"
    loaded = run("load", str(SEEDS), "--db", db, "--quiet")
    assert loaded.returncode == 0, loaded.stderr
    port = _free_port()
    proc = subprocess.Popen([*FHIRSTUDY, "serve", "--port", str(port), "--db", db, "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60      # a loaded machine starts gunicorn slowly; never go on before it answers
    while True:
        try:
            requests.get(f"{base}/metadata", timeout=1)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("fhirstudy serve did not start within 60 s")
            time.sleep(0.1)
    yield base, loaded, db
    proc.terminate()
    proc.wait(timeout=10)


def test_load_then_serve_breast_cancer_search(served):
    base, loaded, _ = served
    assert "loaded 5 trials" in loaded.stderr
    r = requests.get(f"{base}/ResearchStudy", params={"condition": "breast-cancer"}, timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/fhir+json")
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset" and bundle["total"] == 5
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {"ResearchStudy"}


def test_served_endpoint_reads_and_errors(served):
    base, _, _ = served
    assert requests.get(f"{base}/ResearchStudy/nct06731140", timeout=5).json()["title"].startswith("Reverse HER2")
    missing = requests.get(f"{base}/ResearchStudy/nope", timeout=5)
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    unknown = requests.get(f"{base}/ResearchStudy", params={"bogus": "1"}, timeout=5)
    assert unknown.status_code == 400 and "bogus" in json.dumps(unknown.json())
    cs = requests.get(f"{base}/CodeSystem/fhirstudy-condition", timeout=5).json()
    assert cs["url"] == "https://fhirstudy.org/fhir/CodeSystem/condition"
    assert requests.get(f"{base}/ResearchStudy", params={"condition": "lung-cancer"}, timeout=5).json()["total"] == 0


def test_loading_twice_makes_no_new_versions(served):
    base, _, db = served
    before = requests.get(f"{base}/ResearchStudy/nct06731140", timeout=5)
    assert run("load", str(SEEDS), "--db", db, "--quiet").returncode == 0
    after = requests.get(f"{base}/ResearchStudy/nct06731140", timeout=5)
    assert before.headers["ETag"] == after.headers["ETag"] == 'W/"1"'
    assert requests.get(f"{base}/ResearchStudy", params={"condition": "breast-cancer"}, timeout=5).json()["total"] == 5


def test_jobs_give_the_same_bundles_and_the_report_counts(tmp_path):
    one = run("convert", str(SEEDS), "-o", str(tmp_path / "one"), "--quiet")
    two = run("convert", str(SEEDS), "-o", str(tmp_path / "two"), "--quiet", "--jobs", "2",
              "--report", str(tmp_path / "report.json"))
    assert one.returncode == two.returncode == 0, two.stderr
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["records"] == report["converted"] == 5 and report["failed"] == 0
    assert report["unmappedFields"] == {}


def test_a_command_builds_only_its_own_arguments():
    """``fhirstudy reindex ...`` does not import what the other commands' arguments come from (the
    push client, the readers): building every command's arguments took most of a second before
    any command ran. ``--help`` and a wrong command still name every command."""
    probe = ("import sys\nfrom fhirstudy.cli.main import main\ntry:\n    main(sys.argv[1:])\n"
             "except SystemExit:\n    pass\nprint(sorted(m for m in sys.modules if m.startswith(('fhirstudy.push', "
             "'fhirstudy.sources', 'fhirstudy.ctgov'))))")
    done = subprocess.run([sys.executable, "-c", probe, "reindex", "--help"], capture_output=True, text=True,
                          timeout=60, check=True)
    assert "--batch" in done.stdout and done.stdout.strip().endswith("[]"), done.stdout
    for argv in (["--help"], ["nope"]):
        done = subprocess.run([sys.executable, "-m", "fhirstudy.cli", *argv], capture_output=True, text=True, timeout=60)
        assert all(name in done.stdout + done.stderr for name in ("convert", "push", "sync", "reindex")), done
