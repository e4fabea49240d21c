"""The built wheel works on its own: built from this checkout, installed into a fresh virtual
environment outside it, ``fhirstudy convert`` and ``fhirstudy serve`` run from the installed package
(its data tables included), not from the checkout."""
from __future__ import annotations

import http.client
import os
import site
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """(the fresh venv's bin folder, the environment to run it in) with the wheel installed."""
    work = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work / "dist"),
                            str(ROOT)], capture_output=True, text=True, timeout=600)
    if built.returncode != 0:
        pytest.fail(f"building the wheel failed: {built.stderr[-2000:]}")
    (wheel,) = (work / "dist").glob("fhirstudy-*.whl")
    venv.create(work / "venv", with_pip=True)
    bin_dir = work / "venv" / "bin"
    # the dependencies come from this test run's environment (PYTHONPATH: no .pth files, so not the
    # editable install of the checkout); fhirstudy itself only from the wheel
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site.getsitepackages())}
    env.pop("FHIRSTUDY_MAPPINGS_DIR", None)
    subprocess.run([bin_dir / "python", "-m", "pip", "install", "--no-deps", "--quiet", str(wheel)],
                   check=True, capture_output=True, timeout=300, env=env)
    return bin_dir, env


def test_the_installed_package_is_the_wheel_with_its_data(installed, tmp_path):
    bin_dir, env = installed
    where = subprocess.run([bin_dir / "python", "-c", "import fhirstudy.mappings as m; print(m.folder())"],
                           capture_output=True, text=True, check=True, cwd=tmp_path, env=env).stdout.strip()
    assert Path(where).is_relative_to(bin_dir.parent) and not Path(where).is_relative_to(ROOT)
    assert (Path(where) / "ctgov-to-fhir.json").is_file()


def test_convert_and_serve_from_the_wheel(installed, tmp_path):
    bin_dir, env = installed
    converted = subprocess.run([bin_dir / "fhirstudy", "convert", str(SEEDS), "-o", "-", "-q"],
                               capture_output=True, cwd=tmp_path, env=env, timeout=300)
    assert converted.returncode == 0, converted.stderr
    bundles = [orjson.loads(line) for line in converted.stdout.splitlines()]
    assert len(bundles) == len(list(SEEDS.glob("*.txt"))) and all(b["resourceType"] == "Bundle" for b in bundles)
    db = f"sqlite:///{tmp_path / 'w.db'}"
    loaded = subprocess.run([bin_dir / "fhirstudy", "load", str(SEEDS), "--db", db, "-q"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    port = _free_port()
    server = subprocess.Popen([bin_dir / "fhirstudy", "serve", "--db", db, "--port", str(port), "--workers", "1"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/ResearchStudy?condition=breast-cancer")
                response = conn.getresponse()
                break
            except OSError:
                conn.close()
                assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        assert response.status == 200
        assert orjson.loads(response.read())["total"] == len(bundles)
        for path, kind in (("/", "text/html"), ("/_pages/static/pages.css", "text/css")):  # the pages' package data
            conn.request("GET", path, headers={"Accept": "text/html,*/*;q=0.8"})
            page = conn.getresponse()
            body = page.read()
            assert page.status == 200 and page.getheader("Content-Type", "").startswith(kind), (path, page.status)
            assert body.strip(), path
        conn.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
