"""The store under hostile or unlucky conditions, on a SQLite file and a real PostgreSQL server:
the write generation in commit order, writes prepared outside the write lock, values the database
cannot take, a time limit on searches, database URLs, integers past 64 bits."""
from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import textwrap
import threading

import orjson
import pytest

from _server_fixtures import fixed_clock, pg_server, pg_url, sample_resources  # noqa: F401
from fhirstudy.limits import MAX_OR_VALUES
from fhirstudy.errors import QueryTooCostly, StoreError, StoreValueRejected
from fhirstudy.search import load_registry, parse_search
from fhirstudy.store import open_store
from fhirstudy.store import indexing as store_indexing


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    """A fresh SQLite file or PostgreSQL database."""
    return f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")


@pytest.fixture
def store(url):
    opened = open_store(url, clock=fixed_clock)
    yield opened
    opened.close()


def _query(rtype: str, *pairs: tuple[str, str]):
    return parse_search(rtype, list(pairs), load_registry())


def _study(rid: str, **fields) -> dict:
    return {"resourceType": "ResearchStudy", "id": rid, "status": "active", **fields}


# -- 1. the generation moves at commit --------------------------------------------------------


@pytest.mark.postgres
def test_a_cached_search_sees_a_write_that_commits_after_a_later_one(pg_url):
    """Hold one write open, commit a second, search (the answer is cached), commit the first:
    the next search answers both (a generation taken from a sequence at insert stayed put)."""
    from fhirstudy.server import STORE_EXTENSION, close_store, create_app

    app = create_app({"TESTING": True, "DATABASE_URL": pg_url})
    client = app.test_client()
    other = open_store(pg_url)
    held, release, failures = threading.Event(), threading.Event(), []

    def slow_write(tx):
        result = tx.put([_study("first")])
        held.set()
        assert release.wait(30)
        return result

    def run() -> None:
        try:
            other.write(slow_write)
        except Exception as exc:  # reported by the test below
            failures.append(exc)

    def total() -> int:
        response = client.get("/ResearchStudy?status=active")
        assert response.status_code == 200
        return orjson.loads(response.data)["total"]

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert held.wait(30)
        app.extensions[STORE_EXTENSION].put_many([_study("second")])
        assert total() == 1
        assert total() == 1  # from the cache
    finally:
        release.set()
        thread.join(30)
        other.close()
    assert not failures
    try:
        assert total() == 2
    finally:
        close_store(app)


def test_the_generation_moves_once_per_committed_write_not_for_unchanged_ones(store):
    before = store.generation()
    store.put_many([_study("g-1")])
    moved = store.generation()
    store.put_many([_study("g-1")])
    store.write(lambda tx: tx.read_entry("ResearchStudy", "g-1"))
    assert moved > before and store.generation() == moved


# -- 3. the costly part of a write is done before the write lock is taken ----------------------


def test_put_many_computes_index_rows_without_holding_the_sqlite_write_lock(tmp_path, monkeypatch):
    """A loader's trials are indexed before BEGIN IMMEDIATE, so a server write waiting beside a
    long load gets the lock between two trials instead of timing out."""
    path = tmp_path / "store.db"
    store = open_store(f"sqlite:///{path}")
    real = store_indexing.index_rows
    seen = []

    def spy(doc, params):
        params = list(params)
        probe = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            locked = False
        except sqlite3.OperationalError:
            locked = True
        finally:
            probe.close()
        seen.append((locked, doc["id"], [p.code for p in params]))
        return real(doc, params)

    monkeypatch.setattr(store_indexing, "index_rows", spy)
    try:
        store.put_many(sample_resources()[:3])
    finally:
        store.close()
    linked = {p.code for p in load_registry().params("ResearchStudy").values() if p.via}
    costly = [locked for locked, _, codes in seen if codes != ["_lastUpdated"] and not set(codes) <= linked]
    assert len(costly) == 3 and not any(costly)
    # only what walks into a resource outside the batch (rs-1's stored eligibility and site, rs-2's
    # sites: site-near) waits for the write, which must see the stored version: a handful of rows,
    # not the trial's; rs-3 points at nothing
    assert [(locked, rid) for locked, rid, codes in seen if codes and set(codes) <= linked] == [
        (True, "rs-1"), (True, "rs-2")]


# -- 4. values the database cannot take --------------------------------------------------------


def test_a_nul_in_a_resource_never_reaches_a_text_column(store):
    # validation refuses it on every write path (tests/test_server_boundary.py); behind it, the
    # stored JSON escapes it and the index rows drop control characters, so PostgreSQL takes it
    store.put_many([_study("ok"), _study("nul", title="breast\x00cancer")])
    assert orjson.loads(store.read("ResearchStudy", "nul"))["title"] == "breast\x00cancer"
    assert [e.id for e in store.search(_query("ResearchStudy", ("title", "breastcancer"))).entries] == ["nul"]


@pytest.mark.parametrize("where, call", [
    ("read", lambda s: s.read("ResearchStudy", "a\x00b")),
    ("history", lambda s: s.history("ResearchStudy", "a\x00b")),
    ("since", lambda s: s.history(since="2025\x00")),
    ("search", lambda s: s.search(dataclasses.replace(
        _query("ResearchStudy", ("title", "x")), clauses=[dataclasses.replace(
            _query("ResearchStudy", ("title", "x")).clauses[0],
            values=tuple(dataclasses.replace(v, normalized="a\x00", exact="a\x00")
                         for v in _query("ResearchStudy", ("title", "x")).clauses[0].values))]))),
    ("id too long", lambda s: s.put_many([_study("x" * 65)])),
])
def test_values_the_database_cannot_take_are_a_client_error(store, where, call):
    with pytest.raises(StoreValueRejected) as caught:
        call(store)
    assert caught.value.status == 400


def test_long_references_and_uris_are_stored_and_found(store):
    """Longer than their columns (PostgreSQL would refuse them): stored cut, found whole."""
    url = "https://example.org/fhir/" + "x" * 300
    store.put_many([{"resourceType": "Location", "id": "far", "managingOrganization": {"reference": url}},
                    {"resourceType": "CodeSystem", "id": "long", "status": "active", "content": "complete",
                     "url": url}])
    assert [e.id for e in store.search(_query("Location", ("organization", url))).entries] == ["far"]
    assert [e.id for e in store.search(_query("CodeSystem", ("url", url))).entries] == ["long"]


def test_a_nul_in_a_search_is_answered_400_over_http(tmp_path):
    from fhirstudy.server import close_store, create_app

    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'http.db'}"})
    try:
        response = app.test_client().get("/ResearchStudy/a%00b")
        assert response.status_code == 400
        assert orjson.loads(response.data)["issue"][0]["code"] == "invalid"
    finally:
        close_store(app)


# -- 5. a time limit on searches ----------------------------------------------------------------

# as many substrings as one search takes, looked for in every name: enough work to outlast a 1 ms
# limit many times over
_COSTLY = ("name:contains", ",".join(f"q{n:03d}z" for n in range(MAX_OR_VALUES)))


@pytest.fixture
def crowded(url):
    store = open_store(url, search_timeout_ms=1)
    store.put_many([{"resourceType": "Organization", "id": f"org-{n}", "name": f"Organisation number {n}"}
                    for n in range(2000)])
    yield store
    store.close()


def test_a_search_past_the_time_limit_is_too_costly(crowded):
    with pytest.raises(QueryTooCostly, match="1 ms") as caught:
        crowded.search(_query("Organization", _COSTLY))
    assert (caught.value.status, caught.value.code) == (400, "too-costly")
    crowded.search_timeout_ms = 0  # no limit: the same search answers
    assert crowded.search(_query("Organization", _COSTLY)).total == 0


def test_the_limit_comes_from_the_environment_and_reaches_the_server(tmp_path, monkeypatch):
    from fhirstudy.server import STORE_EXTENSION, close_store, create_app

    monkeypatch.setenv("FHIRSTUDY_SEARCH_TIMEOUT_MS", "1")
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'slow.db'}",
                      "SEARCH_CACHE_BYTES": 0})
    try:
        app.extensions[STORE_EXTENSION].put_many(
            [{"resourceType": "Organization", "id": f"org-{n}", "name": f"Organisation {n}"} for n in range(2000)])
        response = app.test_client().get(f"/Organization?{_COSTLY[0]}={_COSTLY[1]}")
        assert response.status_code == 400
        issue = orjson.loads(response.data)["issue"][0]
        assert issue["code"] == "too-costly" and "1 ms" in issue["diagnostics"]
    finally:
        close_store(app)


# -- 6. database URLs -----------------------------------------------------------------------------

@pytest.mark.parametrize("bad, says", [
    ("mysql://user@host/db", "does not support mysql:// databases; it takes sqlite:///path.db"),
    ("/tmp/x.db", "for a SQLite file write sqlite:////tmp/x.db"),
    ("sqlite:////nonexistent/dir/x.db", "the folder /nonexistent/dir does not exist"),
    ("", "is not a database URL"),
])
def test_unusable_database_urls_say_what_to_write(bad, says):
    with pytest.raises(StoreError) as caught:
        open_store(bad)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_postgresql_without_psycopg_says_what_to_install(tmp_path):
    """psycopg made unimportable by a sitecustomize in a subprocess."""
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys
        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name == "psycopg" or name.startswith("psycopg."):
                    raise ImportError("No module named 'psycopg'")
        sys.meta_path.insert(0, _Block())
    """))
    script = "from fhirstudy.store import open_store\nopen_store('postgresql://u@127.0.0.1:1/db')"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    assert "StoreError: PostgreSQL needs the psycopg driver, which is not installed: " \
           "pip install 'fhirstudy[postgres]'" in done.stderr


def test_the_cli_reports_a_bad_url_in_one_line(capsys):
    from fhirstudy.cli import main

    assert main(["reindex", "--db", "mysql://user@host/db"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: fhirstudy does not support mysql:// databases; it takes sqlite:///path.db (a file), "
        "sqlite:// (memory) or postgresql://user@host/database"]


# -- 7. integers past 64 bits never reach SQL -----------------------------------------------------

@pytest.mark.parametrize("where, call", [
    ("version", lambda s: s.read_version("ResearchStudy", "g-1", 2**64)),
    ("_offset", lambda s: s.history(offset=2**70)),
    ("_count", lambda s: s.history(count=-1)),
    ("_count", lambda s: s.search(dataclasses.replace(_query("ResearchStudy"), count=2**64))),
    ("_offset", lambda s: s.search(dataclasses.replace(_query("ResearchStudy"), offset=2**63))),
    ("_cursor", lambda s: s.search(dataclasses.replace(_query("ResearchStudy"), cursor=(2**64,)))),
])
def test_integers_past_64_bits_are_refused_by_the_store(store, where, call):
    store.put_many([_study("g-1")])
    with pytest.raises(StoreValueRejected, match=where) as caught:
        call(store)
    assert caught.value.status == 400
