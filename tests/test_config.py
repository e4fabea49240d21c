"""Configuration read in one place (fhirstudy.config): each setting's default, its environment
override and the one-line error for a value not of its type; the server and the command line
take them from there; the README's table is the one SETTINGS makes."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fhirstudy import config, limits
from fhirstudy.config import ConfigError
from fhirstudy.errors import InvalidRequest

ROOT = Path(__file__).resolve().parents[1]
FHIRSTUDY = [sys.executable, "-m", "fhirstudy.cli"]

DEFAULTS = [
    ("DATABASE_URL", "sqlite:///fhirstudy.db"),
    ("BASE_URL", None),
    ("WRITE_TOKEN", None),
    ("SEARCH_CACHE_BYTES", 64 * 2**20),
    ("MAX_BODY_BYTES", limits.MAX_BODY_BYTES),
    ("MAX_URL_BYTES", limits.MAX_URL_BYTES),
    ("MAX_HEADER_BYTES", limits.MAX_HEADER_BYTES),
    ("MAX_HEADER_FIELDS", limits.MAX_HEADER_FIELDS),
    ("SEARCH_TIMEOUT_MS", 5000),
    ("EXPORT_DIR", None),
    ("EXPORT_RETENTION_SECONDS", 3600),
    ("EXPORT_MAX_JOBS", 4),
    ("EXPORT_POLL_SECONDS", 2),
    ("EXPORT_STALE_SECONDS", 30),
    ("EXPORT_PAGE_PAUSE_MS", 0),
    ("MAPPINGS_DIR", None),
    ("PUSH_TOKEN", None),
    ("CTGOV_API", None),
    ("DEBUG", False),
]
OVERRIDES = [
    ("DATABASE_URL", "postgresql://u:p@db/fhir", "postgresql://u:p@db/fhir"),
    ("BASE_URL", "https://fhir.example.org/r5", "https://fhir.example.org/r5"),
    ("WRITE_TOKEN", "s3cret", "s3cret"),
    ("SEARCH_CACHE_BYTES", "0", 0),
    ("MAX_BODY_BYTES", " 1024 ", 1024),
    ("MAX_URL_BYTES", "2048", 2048),
    ("MAX_HEADER_BYTES", "512", 512),
    ("MAX_HEADER_FIELDS", "7", 7),
    ("SEARCH_TIMEOUT_MS", "0", 0),
    ("EXPORT_DIR", "/srv/exports", Path("/srv/exports")),
    ("EXPORT_RETENTION_SECONDS", "60", 60),
    ("EXPORT_MAX_JOBS", "1", 1),
    ("EXPORT_POLL_SECONDS", "0", 0),
    ("EXPORT_STALE_SECONDS", "5", 5),
    ("EXPORT_PAGE_PAUSE_MS", "100", 100),
    ("MAPPINGS_DIR", "/srv/tables", Path("/srv/tables")),
    ("PUSH_TOKEN", "t0ken", "t0ken"),
    ("CTGOV_API", "http://127.0.0.1:8099/api/v2", "http://127.0.0.1:8099/api/v2"),
    ("DEBUG", "1", True),
    ("DEBUG", "off", False),
]
BAD = [  # text and path settings take any value; the others name the variable and the value
    ("SEARCH_CACHE_BYTES", "64MB", "FHIRSTUDY_SEARCH_CACHE_BYTES must be a whole number (0 or more, below 2^63), "
                                   "not '64MB'"),
    ("SEARCH_CACHE_BYTES", "-1", "FHIRSTUDY_SEARCH_CACHE_BYTES must be a whole number"),
    ("MAX_BODY_BYTES", "0", "FHIRSTUDY_MAX_BODY_BYTES must be (1 or more, below 2^63), not 0"),
    ("MAX_URL_BYTES", "lots", "FHIRSTUDY_MAX_URL_BYTES must be a whole number (1 or more, below 2^63), not 'lots'"),
    ("MAX_HEADER_BYTES", "1e3", "FHIRSTUDY_MAX_HEADER_BYTES must be a whole number"),
    ("MAX_HEADER_FIELDS", "²", "FHIRSTUDY_MAX_HEADER_FIELDS must be a whole number"),
    ("SEARCH_TIMEOUT_MS", "5s", "FHIRSTUDY_SEARCH_TIMEOUT_MS must be a whole number (0 or more, below 2^63), "
                                "not '5s'"),
    ("EXPORT_MAX_JOBS", "0", "FHIRSTUDY_EXPORT_MAX_JOBS must be (1 or more, below 2^63), not 0"),
    ("EXPORT_STALE_SECONDS", "30s", "FHIRSTUDY_EXPORT_STALE_SECONDS must be a whole number"),
    ("DEBUG", "maybe", "FHIRSTUDY_DEBUG must be 1 or 0 (true/false, yes/no, on/off), not 'maybe'"),
]


def test_every_setting_is_covered_here():
    assert [key for key, _ in DEFAULTS] == [s.key for s in config.SETTINGS]
    assert {key for key, _, _ in OVERRIDES} == set(config.BY_KEY)
    assert all(s.env == f"FHIRSTUDY_{s.key}" for s in config.SETTINGS)


@pytest.mark.parametrize("key,default", DEFAULTS)
def test_default(key, default):
    assert config.read([key], environ={}) == {key: default}
    assert config.read([key], environ={f"FHIRSTUDY_{key}": ""}) == {key: default}  # empty: not set


@pytest.mark.parametrize("key,raw,expected", OVERRIDES)
def test_environment_overrides_the_default(key, raw, expected):
    assert config.value(key, environ={f"FHIRSTUDY_{key}": raw, "FHIRSTUDY_OTHER": "x"}) == expected


@pytest.mark.parametrize("key,raw,message", BAD)
def test_bad_value_is_a_config_error_naming_the_variable(key, raw, message):
    with pytest.raises(ConfigError) as caught:
        config.read([key], environ={f"FHIRSTUDY_{key}": raw})
    assert message in str(caught.value)
    assert isinstance(caught.value, InvalidRequest) and caught.value.status == 400


def test_read_without_keys_reads_every_setting_and_an_unknown_key_is_refused():
    assert set(config.read(environ={})) == set(config.BY_KEY)
    with pytest.raises(KeyError, match="NOT_A_SETTING"):
        config.read(["NOT_A_SETTING"], environ={})


def test_create_app_reads_its_config_through_the_table(tmp_path, monkeypatch):
    from fhirstudy.server import close_store, create_app

    monkeypatch.setenv("FHIRSTUDY_MAX_URL_BYTES", "4096")
    monkeypatch.setenv("FHIRSTUDY_BASE_URL", "https://fhir.example.org/r5")
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", "MAX_HEADER_FIELDS": 9})
    try:
        assert (app.config["MAX_URL_BYTES"], app.config["MAX_HEADER_FIELDS"]) == (4096, 9)  # test_config wins
        assert app.config["BASE_URL"] == "https://fhir.example.org/r5"
    finally:
        close_store(app)
    monkeypatch.setenv("FHIRSTUDY_SEARCH_CACHE_BYTES", "big")
    with pytest.raises(ConfigError, match="FHIRSTUDY_SEARCH_CACHE_BYTES"):
        create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"})


def _run(args, **env):
    environ = {k: v for k, v in os.environ.items() if k != "FHIRSTUDY_DEBUG"}
    return subprocess.run([*FHIRSTUDY, *args], capture_output=True, text=True, timeout=120,
                          env={**environ, **env})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args,env,line", [
    (["serve", "--port", "PORT", "--db", "sqlite:///DB"], {"FHIRSTUDY_MAX_URL_BYTES": "lots"},
     "error: FHIRSTUDY_MAX_URL_BYTES must be a whole number (1 or more, below 2^63), not 'lots'"),
    (["load", "IN", "--db", "sqlite:///DB"], {"FHIRSTUDY_SEARCH_TIMEOUT_MS": "5s"},
     "FHIRSTUDY_SEARCH_TIMEOUT_MS must be a whole number"),
    (["validate", "IN"], {"FHIRSTUDY_DEBUG": "maybe"}, "FHIRSTUDY_DEBUG must be 1 or 0"),
])
def test_a_bad_setting_is_one_line_and_exit_2_on_the_command_line(tmp_path, args, env, line):
    record = tmp_path / "in.json"
    record.write_text("{}")
    swap = {"PORT": str(_free_port()), "sqlite:///DB": f"sqlite:///{tmp_path / 'x.db'}", "IN": str(record)}
    done = _run([swap.get(a, a) for a in args], **env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and line in lines[0] and "Traceback" not in done.stderr


def test_no_module_reads_a_fhirstudy_variable_but_config():
    readers = []
    for path in sorted((ROOT / "fhirstudy").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name != "config.py" and re.search(r"os\.environ|getenv", text):
            readers.append(str(path.relative_to(ROOT)))
    assert readers == [], f"read the environment through fhirstudy.config: {readers}"


README_START = "<!-- settings: made from fhirstudy.config.SETTINGS by `python -m fhirstudy.config` -->\n"
README_END = "<!-- end of settings -->"


def test_readme_lists_every_setting_as_settings_does():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert README_START in readme and README_END in readme
    table = readme.split(README_START, 1)[1].split(README_END, 1)[0]
    assert table == config.markdown_table(), "regenerate the README's table: python -m fhirstudy.config"
