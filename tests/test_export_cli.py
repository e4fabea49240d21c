"""``fhirstudy export -o DIR``: the export's files and a static manifest, written whole or not at
all, with usage errors as one line and exit 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from conftest import SAMPLES, SEEDS


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fhirstudy.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('export-cli')}/cli.db"
    done = run("load", str(SEEDS), str(SAMPLES), "--db", url, "--quiet")
    assert done.returncode == 0, done.stderr
    return url


def _lines(directory: Path, manifest: dict) -> dict[tuple[str, str], dict]:
    out = {}
    for listed in manifest["output"]:
        for line in (directory / listed["url"]).read_bytes().splitlines():
            resource = orjson.loads(line)
            out[(resource["resourceType"], resource["id"])] = resource
        assert listed["count"] == len((directory / listed["url"]).read_bytes().splitlines())
    return out


def test_export_writes_the_files_and_a_manifest_naming_them(db, tmp_path):
    done = run("export", "-o", str(tmp_path / "out"), "--level", "ResearchStudy",
               "--type-filter", "ResearchStudy?condition=breast-cancer", "--db", db)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""                             # stdout carries nothing; the summary is on stderr
    assert "exported" in done.stderr and "transactionTime" in done.stderr
    manifest = orjson.loads((tmp_path / "out" / "manifest.json").read_bytes())
    assert manifest["requiresAccessToken"] is False and manifest["transactionTime"]
    lines = _lines(tmp_path / "out", manifest)
    studies = {i for t, i in lines if t == "ResearchStudy"}
    assert "nct00763412" not in studies and studies   # not a breast cancer study
    assert all(any(f"ResearchStudy/{s}" in str(p["target"]) for s in studies)
               for (t, _), p in lines.items() if t == "Provenance")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["manifest.json", *(f["url"] for f in manifest["output"])])


def test_since_exports_only_what_changed(db, tmp_path):
    first = run("export", "-o", str(tmp_path / "all"), "--db", db)
    assert first.returncode == 0, first.stderr
    since = orjson.loads((tmp_path / "all" / "manifest.json").read_bytes())["transactionTime"]
    later = run("export", "-o", str(tmp_path / "since"), "--since", since, "--db", db)
    assert later.returncode == 0, later.stderr
    manifest = orjson.loads((tmp_path / "since" / "manifest.json").read_bytes())
    assert manifest["output"] == [] and manifest["deleted"] == []


@pytest.mark.parametrize("args, says", [
    (["--type", "Nonsense"], "Nonsense"),
    (["--since", "yesterday"], "_since"),
    (["--type-filter", "ResearchStudy?nonsense=1"], "nonsense"),
    (["--level", "Group"], "--group"),
])
def test_a_bad_export_is_one_line_and_exit_2_and_writes_nothing(db, tmp_path, args, says):
    done = run("export", "-o", str(tmp_path / "bad"), *args, "--db", db)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "bad").exists() and list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_empty_is_refused(db, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    done = run("export", "-o", str(tmp_path / "full"), "--db", db)
    assert done.returncode == 2 and "not an empty folder" in done.stderr
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
