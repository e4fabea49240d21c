"""Mistakes at the command line, through the real ``fhirstudy`` console script: each gives one clear
line on stderr, the right exit code (2 usage, 1 failed records, 70 internal), and never a traceback;
every command that starts its work ends with its summary line.
"""
from __future__ import annotations

import json
import os
import pty
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from _server_fixtures import pg_server, pg_url  # noqa: F401
from conftest import SAMPLES, SEEDS
from fhirstudy.store import open_store

FHIRSTUDY = str(Path(sys.executable).with_name("fhirstudy"))
ONE = SAMPLES / "NCT05594173.json"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 70


@pytest.fixture(autouse=True)
def _samples():
    if not ONE.exists():
        pytest.skip(f"registry samples not found at {SAMPLES} (set FHIRSTUDY_SHARED_DIR)")


def run(*args: str, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FHIRSTUDY_DEBUG"}
    kw.setdefault("timeout", 300)
    return subprocess.run([FHIRSTUDY, *args], capture_output=True, text=True, cwd=cwd, env=env, **kw)


def one_line(result: subprocess.CompletedProcess) -> str:
    """The one line on stderr, after checking there is exactly one and no traceback."""
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# (name, argv built from tmp_path, exit code, words the one line must hold)
USAGE_MISTAKES = [
    ("output-under-proc", lambda t: ["convert", str(ONE), "-o", "/proc/nope"], ["/proc/nope", "cannot create"]),
    ("output-file-not-folder", lambda t: ["convert", str(ONE), "-o", str(_file(t, "notes"))],
     ["notes", "is a file, not a folder"]),
    ("output-in-missing-folder", lambda t: ["convert", str(ONE), "-o", str(t / "no" / "x.ndjson")],
     ["x.ndjson", "does not exist"]),
    ("output-is-input", lambda t: ["convert", str(_copy(t, ONE, "in.json")), "-o", str(t / "in.json")],
     ["also an input"]),
    ("report-in-missing-folder", lambda t: ["convert", str(ONE), "-o", "-", "--report", "/nonexistent/r.json"],
     ["/nonexistent/r.json", "does not exist"]),
    ("report-is-folder", lambda t: ["convert", str(ONE), "-o", str(t / "out"), "--report", str(t)],
     ["is a folder"]),
    ("db-bad-scheme", lambda t: ["load", str(ONE), "--db", "bogus://x"], ["--db", "bogus://x"]),
    ("db-missing-folder", lambda t: ["load", str(ONE), "--db", "sqlite:////nonexistent/dir/x.db"],
     ["--db", "/nonexistent/dir/x.db"]),
    ("missing-input-convert", lambda t: ["convert", str(t / "nowhere.json"), "-o", "-"], ["no such file", "nowhere"]),
    ("missing-input-load", lambda t: ["load", str(t / "nowhere.json"), "--db", "sqlite://"], ["no such file"]),
    ("missing-input-validate", lambda t: ["validate", str(t / "nowhere.json")], ["no such file", "nowhere"]),
    ("jobs-superscript", lambda t: ["convert", str(ONE), "-o", "-", "-j", "²"], ["--jobs", "'²'"]),
    ("jobs-past-64-bits", lambda t: ["convert", str(ONE), "-o", "-", "-j", "99999999999999999999999"], ["--jobs"]),
    ("unknown-format", lambda t: ["convert", str(ONE), "-o", "-", "--format", "nope"], ["--format"]),
]


def _file(folder: Path, name: str) -> Path:
    (folder / name).write_text("not a folder\n")
    return folder / name


def _copy(folder: Path, source: Path, name: str) -> Path:
    shutil.copy(source, folder / name)
    return folder / name


@pytest.mark.parametrize(("name", "argv", "words"), USAGE_MISTAKES, ids=[m[0] for m in USAGE_MISTAKES])
def test_usage_mistake_is_one_line_and_exit_2_before_any_work(tmp_path, name, argv, words):
    result = run(*argv(tmp_path))
    line = one_line(result)
    assert result.returncode == EXIT_USAGE, line
    assert "error:" in line and all(w in line for w in words), line
    assert result.stdout == ""  # nothing converted: the mistake was found before the work
    assert not list(tmp_path.glob("**/*.partial"))


def test_an_existing_ndjson_output_is_replaced_by_one_bundle_a_line(tmp_path):
    out = tmp_path / "existing.ndjson"
    out.write_text("old\n")
    result = run("convert", str(ONE), str(SAMPLES / "NCT03630471.json"), "-o", str(out))
    assert result.returncode == EXIT_OK, result.stderr
    assert one_line(result).startswith("converted 2, failed 0")
    lines = out.read_bytes().splitlines()
    assert [json.loads(x)["entry"][0]["resource"]["id"] for x in lines] == ["nct05594173", "nct03630471"]


def test_json_output_is_one_transaction_bundle_of_every_trial(tmp_path):
    run("convert", str(ONE), "-o", str(tmp_path / "folder"))
    result = run("convert", str(ONE), str(SAMPLES / "NCT03630471.json"), "-o", str(tmp_path / "all.json"))
    assert result.returncode == EXIT_OK and not (tmp_path / "all.json").is_dir()
    bundle = json.loads((tmp_path / "all.json").read_text())
    single = json.loads((tmp_path / "folder" / "nct05594173.json").read_text())
    assert bundle["type"] == "transaction"
    assert bundle["entry"][: len(single["entry"])] == single["entry"]
    assert {e["resource"]["id"] for e in bundle["entry"]} >= {"nct05594173", "nct03630471"}
    assert run("validate", str(tmp_path / "all.json")).returncode == EXIT_OK


def test_ndjson_on_stdout_is_one_bundle_a_line_when_stderr_is_a_terminal():
    master, slave = pty.openpty()
    try:
        result = subprocess.run([FHIRSTUDY, "convert", str(SAMPLES), "-o", "-", "-q"], stdout=subprocess.PIPE,
                                stderr=slave, timeout=300)
    finally:
        os.close(slave)
        os.close(master)
    lines = result.stdout.split(b"\n")
    assert lines[-1] == b"" and all(lines[:-1]), "no blank line, nothing but Bundles"
    assert [json.loads(x)["resourceType"] for x in lines[:-1]] == ["Bundle"] * 18


def test_a_folder_scan_skips_files_that_are_not_records_and_says_so(tmp_path):
    result = run("convert", str(SAMPLES), "-o", str(tmp_path / "out"), "-q")
    assert result.returncode == EXIT_OK, result.stderr
    summary = one_line(result)
    assert summary.startswith("converted 18, failed 0") and "skipped 1 file that is not a record: " in summary
    assert summary.split("not a record: ")[1].split(" -> ")[0] == str(SAMPLES / "README.md")
    assert len(list((tmp_path / "out").iterdir())) == 18


def test_a_file_named_on_its_own_is_read_even_if_it_is_not_a_record(tmp_path):
    result = run("convert", str(SAMPLES / "README.md"), "-o", str(tmp_path / "out"))
    assert result.returncode == EXIT_FAILED
    assert "README.md" in result.stderr and "no reader recognises" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("converted 0, failed 1")


def test_validate_takes_a_folder_like_convert(tmp_path):
    run("convert", str(SEEDS), "-o", str(tmp_path / "out"))
    (tmp_path / "out" / "notes.md").write_text("# not FHIR\n")
    result = run("validate", str(tmp_path / "out"))
    assert result.returncode == EXIT_OK, result.stderr
    assert one_line(result).startswith("valid 5, invalid 0, skipped 1 file")
    bad = json.loads((tmp_path / "out" / "nct06731140.json").read_text())
    bad["entry"][0]["resource"]["status"] = "bogus"
    (tmp_path / "out" / "nct06731140.json").write_text(json.dumps(bad))
    result = run("validate", str(tmp_path / "out"))
    assert result.returncode == EXIT_FAILED and result.stderr.splitlines()[-1].startswith("valid 4, invalid 1")


def test_two_text_records_with_the_same_title_get_two_ids(tmp_path):
    text = (SEEDS / "000_8937f82dafed2dd7.txt").read_text(encoding="utf-8")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text(text, encoding="utf-8")
    (tmp_path / "in" / "b.txt").write_text(text.replace("Trastuzumab.", "trastuzumab (ADCC).", 1), encoding="utf-8")
    result = run("convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q")
    assert result.returncode == EXIT_OK and one_line(result).startswith("converted 2, failed 0")
    assert len(list((tmp_path / "out").iterdir())) == 2


def test_the_same_record_twice_is_written_once_and_the_second_reported(tmp_path):
    (tmp_path / "in").mkdir()
    for name in ("a.txt", "b.txt"):
        shutil.copy(SEEDS / "000_8937f82dafed2dd7.txt", tmp_path / "in" / name)
    _copy(tmp_path / "in", ONE, "c.json")
    _copy(tmp_path / "in", ONE, "d.json")
    result = run("convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q")
    assert result.returncode == EXIT_FAILED and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert "b.txt:1" in errors[0] and "the same trial as" in errors[0] and "a.txt:1" in errors[0]
    assert "d.json:1" in errors[1] and "ResearchStudy/nct05594173" in errors[1]
    assert result.stderr.splitlines()[-1].startswith("converted 2, failed 2")
    assert len(list((tmp_path / "out").iterdir())) == 2


def test_ids_do_not_depend_on_unicode_normalisation(tmp_path):
    import unicodedata

    text = (SEEDS / "000_8937f82dafed2dd7.txt").read_text(encoding="utf-8")
    (tmp_path / "nfc.txt").write_text(unicodedata.normalize("NFC", text.replace("Breast", "Bréast", 1)))
    (tmp_path / "nfd.txt").write_text(unicodedata.normalize("NFD", text.replace("Breast", "Bréast", 1)))
    ids = [json.loads(run("convert", str(tmp_path / n), "-o", "-").stdout)["entry"][0]["resource"]["id"]
           for n in ("nfc.txt", "nfd.txt")]
    assert ids[0] == ids[1] and ids[0].startswith("fs-")


def test_a_closed_stdout_is_an_internal_error_line_not_a_traceback():
    result = subprocess.run([FHIRSTUDY, "convert", str(ONE), "-o", "-"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, timeout=300, preexec_fn=lambda: os.close(1),
                            env={k: v for k, v in os.environ.items() if k != "FHIRSTUDY_DEBUG"})
    assert result.returncode == EXIT_INTERNAL
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()
    assert last[-1].startswith("error: internal error: ") and "FHIRSTUDY_DEBUG=1" in last[-1]
    assert last[-2].startswith("converted ")  # the summary still came


def _four_good_and_one_far_future(folder: Path) -> Path:
    folder.mkdir()
    for name in ("NCT00763412.json", "NCT03064438.json", "NCT03630471.json", "NCT05594173.json"):
        shutil.copy(SAMPLES / name, folder / name)
    study = json.loads((SAMPLES / "NCT02210780.json").read_text())
    study["protocolSection"]["statusModule"]["completionDateStruct"] = {"date": "9999-12-31", "type": "ESTIMATED"}
    (folder / "NCT02210780.json").write_text(json.dumps(study))
    return folder


def test_load_stores_every_good_trial_whatever_one_record_does(tmp_path):
    db = tmp_path / "t.db"
    result = run("load", str(_four_good_and_one_far_future(tmp_path / "in")), "--db", f"sqlite:///{db}", "-q")
    assert "Traceback" not in result.stderr
    store = open_store(f"sqlite:///{db}")
    try:
        stored = {i for i in ("nct00763412", "nct03064438", "nct03630471", "nct05594173", "nct02210780")
                  if store.read("ResearchStudy", i) is not None}
    finally:
        store.close()
    assert {"nct00763412", "nct03064438", "nct03630471", "nct05594173"} <= stored
    if "nct02210780" not in stored:  # the far-future date could not be indexed: its record's problem
        assert result.returncode == EXIT_FAILED
        assert [line for line in result.stderr.splitlines() if line.startswith("error:")][0].startswith(
            f"error: {tmp_path / 'in' / 'NCT02210780.json'}:1")
    assert result.stderr.splitlines()[-1].startswith("loaded ")


@pytest.mark.postgres
def test_load_reports_a_trial_postgresql_refuses_and_stores_the_others(tmp_path, pg_url):
    folder = tmp_path / "in"
    folder.mkdir()
    for n, name in enumerate(("NCT00763412.json", "NCT03064438.json", "NCT05594173.json")):
        study = json.loads((SAMPLES / name).read_text())
        (folder / name).write_text(json.dumps(study))
    _refuse_inserts(pg_url, "nct03064438")
    result = run("load", str(folder), "--db", pg_url, "-q")
    assert result.returncode == EXIT_FAILED and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {folder / 'NCT03064438.json'}:1")
    assert result.stderr.splitlines()[-1].startswith("loaded 2 trials")


def _refuse_inserts(pg_url: str, pattern: str) -> None:
    """Make the real database refuse every resource whose id holds ``pattern`` (a trigger), after
    fhirstudy has made its tables."""
    import psycopg

    open_store(pg_url).close()
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f"""CREATE OR REPLACE FUNCTION refuse() RETURNS trigger AS $$
            BEGIN IF NEW.id LIKE '%{pattern}%' THEN RAISE EXCEPTION 'refused by a test trigger'; END IF;
            RETURN NEW; END $$ LANGUAGE plpgsql""")
        conn.execute("DROP TRIGGER IF EXISTS refuse ON resource")
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON resource FOR EACH ROW EXECUTE FUNCTION refuse()")


def test_summary_ends_every_command_even_when_records_fail(tmp_path):
    (tmp_path / "bad.txt").write_text("A title\nA summary\nBreast Cancer\nFOO: something\n\n\n\n")
    for argv, summary in ((["convert", str(tmp_path / "bad.txt"), "-o", str(tmp_path / "out")], "converted 0"),
                          (["load", str(tmp_path / "bad.txt"), "--db", f"sqlite:///{tmp_path / 'x.db'}"], "loaded 0"),
                          (["validate", str(tmp_path / "bad.txt")], "valid 0, invalid 1")):
        result = run(*argv)
        assert result.returncode == EXIT_FAILED and "Traceback" not in result.stderr
        assert result.stderr.splitlines()[-1].startswith(summary), result.stderr


@pytest.mark.postgres
def test_load_stops_when_the_database_refuses_trial_after_trial(tmp_path, pg_url):
    study = json.loads(ONE.read_text())
    _refuse_inserts(pg_url, "nct9")
    with (tmp_path / "all.ndjson").open("w") as out:
        for n in range(30):
            study["protocolSection"]["identificationModule"]["nctId"] = f"NCT9{n:07d}"
            out.write(json.dumps(study) + "\n")
    result = run("load", str(tmp_path / "all.ndjson"), "--db", pg_url, "-q")
    assert result.returncode == EXIT_FAILED and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[-2] == "error: stopping: the database refused 20 trials in a row"
    assert lines[-1].startswith("loaded 0 trials (0 resources), failed 20")


SERVE_MISTAKES = [
    ("port-out-of-range", ["--port", "99999"], ["--port", "65535"]),
    ("port-superscript", ["--port", "8²"], ["--port"]),
    ("cache-mb-nan", ["--cache-mb", "nan"], ["--cache-mb"]),
    ("host-unknown", ["--host", "no-such-host.invalid"], ["--host", "no-such-host.invalid"]),
    ("db-relative-folder-missing", ["--db", "sqlite:///no/such/folder/x.db"], ["--db", "does not exist"]),
]


@pytest.mark.parametrize(("name", "extra", "words"), SERVE_MISTAKES, ids=[m[0] for m in SERVE_MISTAKES])
def test_serve_mistakes_are_one_line_and_exit_2(tmp_path, name, extra, words):
    port = [] if "--port" in extra else ["--port", str(_free_port())]  # were it to start, a port nobody uses
    result = run("serve", *port, *extra, cwd=tmp_path, timeout=60)
    assert result.returncode == EXIT_USAGE, result.stderr
    line = one_line(result)
    assert all(w in line for w in words), line


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_on_a_busy_port_says_so_before_starting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--port", str(port), "--db", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert result.returncode == EXIT_USAGE
    line = one_line(result)  # no "serving ..." line, no gunicorn errors
    assert f"port {port}" in line and "in use" in line
