"""``--no-narrative`` where fhirstudy writes converted trials: ``convert`` writes no resource ``text``
(in one process and in worker processes, where the option has to travel), ``load`` stores none,
``fetch`` writes none; without the flag every resource has one. (``sync --push-to``'s is in
test_ctgov_sync.py.)"""
from __future__ import annotations

import json

import orjson
import pytest

from conftest import SAMPLES, SEEDS
from ctgov_standin import Registry, serve
from fhirstudy.cli import EXIT_OK, main
from fhirstudy.store import open_store


def _inputs() -> list[str]:
    samples = sorted(p for p in SAMPLES.glob("*") if p.suffix in (".json", ".xml", ".csv")) if SAMPLES.is_dir() else []
    return [str(SEEDS), *map(str, samples)]


def _converted(tmp_path, capsys, *flags: str) -> list[dict]:
    """The resources ``convert`` writes (NDJSON) with ``flags``."""
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}.ndjson"
    code = main(["convert", *_inputs(), "-o", str(out), "-q", *flags])
    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    bundles = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(bundles) >= (13 if SAMPLES.is_dir() else 5)
    return [e["resource"] for b in bundles for e in b["entry"]]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_convert_no_narrative_writes_no_text_and_without_it_every_resource_has_one(tmp_path, capsys, jobs):
    plain = _converted(tmp_path, capsys, "--jobs", jobs)
    assert all(r.get("text", {}).get("status") == "generated" for r in plain)
    bare = _converted(tmp_path, capsys, "--jobs", jobs, "--no-narrative")
    assert [r for r in bare if "text" in r] == []
    assert [(r["resourceType"], r["id"]) for r in bare] == [(r["resourceType"], r["id"]) for r in plain]
    # the same resources, less their text (a Composition section's text is content: it stays)
    assert bare == [{k: v for k, v in r.items() if k != "text"} for r in plain]


def test_load_no_narrative_stores_converted_trials_without_text(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'bare.db'}"
    assert main(["load", str(SEEDS), "--db", db, "-q", "--no-narrative"]) == EXIT_OK, capsys.readouterr().err
    store = open_store(db)
    try:
        with store.snapshot() as snapshot:
            studies = [orjson.loads(r.json) for page in snapshot.pages("ResearchStudy") for r in page]
            sites = [orjson.loads(r.json) for page in snapshot.pages("Location") for r in page]
    finally:
        store.close()
    assert len(studies) == 5 and sites
    assert [r["id"] for r in studies + sites if "text" in r] == []


def test_fetch_no_narrative_writes_no_text(tmp_path, capsys):
    with serve(Registry.replicated(40, seed=3)) as api:
        for flags, name in (([], "plain"), (["--no-narrative", "--jobs", "2"], "bare")):
            code = main(["fetch", "--api", api, "--interval", "0.001", "--term", "study", "-q",
                         "-o", str(tmp_path / f"{name}.ndjson"), *flags])
            assert code == EXIT_OK, capsys.readouterr().err
    plain, bare = ([e["resource"] for line in (tmp_path / f"{n}.ndjson").read_text().splitlines()
                    for e in json.loads(line)["entry"]] for n in ("plain", "bare"))
    assert len(plain) > 40 and all("text" in r for r in plain)
    assert bare == [{k: v for k, v in r.items() if k != "text"} for r in plain]


@pytest.mark.parametrize("command", ["convert", "load", "fetch", "push", "sync"])
def test_help_says_what_no_narrative_does(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--no-narrative" in capsys.readouterr().out
