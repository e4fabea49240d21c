"""History, vread, 304 and 410 (SQLite and PostgreSQL), and the history kept by the store."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
import sqlalchemy as sa

from _server_fixtures import (FHIR_HEADERS, FIXED_INSTANT, WRITE_BASE, db_url, fixed_clock, pg_server,  # noqa: F401
                              pg_url, sample_resources, write_app, write_client)
from fhirstudy.server import STORE_EXTENSION
from fhirstudy.store import open_store
from fhirstudy.store.sql import history as history_table
from fhirstudy.validation import validate_resource

LOCATION = {"resourceType": "Location", "id": "loc-h", "status": "active", "name": "Version 1"}


@pytest.fixture
def versions(write_client):
    """loc-h created (v1), updated (v2), deleted (v3); loc-1 updated (v2)."""
    put = lambda body: write_client.put(f"/Location/{body['id']}", data=orjson.dumps(body), headers=FHIR_HEADERS)  # noqa: E731
    assert put(LOCATION).status_code == 201
    assert put({**LOCATION, "name": "Version 2"}).status_code == 200
    assert write_client.delete("/Location/loc-h", headers=FHIR_HEADERS).status_code == 204
    assert put({"resourceType": "Location", "id": "loc-1", "status": "inactive", "name": "Closed"}).status_code == 200
    return write_client


def _summary(bundle: dict) -> list[tuple]:
    return [(e["fullUrl"].rsplit("/", 1)[1], e["request"]["method"], e["request"]["url"], e["response"]["status"],
             e["response"]["etag"], e.get("resource", {}).get("name")) for e in bundle.get("entry", [])]


def test_instance_history_newest_first(versions):
    response = versions.get("/Location/loc-h/_history")
    assert response.status_code == 200
    bundle = response.get_json()
    assert bundle["type"] == "history" and bundle["total"] == 3
    assert _summary(bundle) == [
        ("loc-h", "DELETE", "Location/loc-h", "204 No Content", 'W/"3"', None),
        ("loc-h", "PUT", "Location/loc-h", "200 OK", 'W/"2"', "Version 2"),
        ("loc-h", "PUT", "Location/loc-h", "201 Created", 'W/"1"', "Version 1"),
    ]
    assert "resource" not in bundle["entry"][0]
    assert bundle["entry"][1]["fullUrl"] == f"{WRITE_BASE}/Location/loc-h"
    assert bundle["entry"][2]["response"]["lastModified"] < bundle["entry"][1]["response"]["lastModified"]
    validate_resource(bundle)


def test_type_and_system_history(versions):
    locations = versions.get("/Location/_history").get_json()
    assert locations["total"] == 2 + 4  # two samples + four versions written here
    assert [s[:2] for s in _summary(locations)[:4]] == [("loc-1", "PUT"), ("loc-h", "DELETE"), ("loc-h", "PUT"),
                                                        ("loc-h", "PUT")]
    everything = versions.get("/_history?_count=3").get_json()
    assert everything["total"] == len(sample_resources()) + 4
    assert len(everything["entry"]) == 3


def test_history_paging_and_since(versions):
    page = versions.get("/Location/_history?_count=2").get_json()
    links = {link["relation"]: link["url"] for link in page["link"]}
    assert "previous" not in links and len(page["entry"]) == 2
    next_url = urlsplit(links["next"])
    assert dict(parse_qsl(next_url.query)) == {"_count": "2", "_offset": "2"}
    assert next_url.path == urlsplit(WRITE_BASE).path + "/Location/_history"
    second = versions.get(f"/Location/_history?{next_url.query}").get_json()
    assert [s[0] for s in _summary(second)] == ["loc-h", "loc-h"]
    since = versions.get("/Location/_history?_since=2025-02-01T00:00:00Z").get_json()
    assert since["total"] == 4  # the sample versions are from 2025-01-02
    assert versions.get("/Location/_history?_since=2030-01-01").get_json()["total"] == 0
    assert versions.get("/Location/_history?_since=2025-01-01").get_json()["total"] == 6


def test_vread(versions, write_app):
    first = versions.get("/Location/loc-h/_history/1")
    assert first.status_code == 200
    assert first.get_json()["name"] == "Version 1"
    assert first.headers["ETag"] == 'W/"1"'
    assert first.data == write_app.extensions[STORE_EXTENSION].read_version("Location", "loc-h", 1).json
    assert versions.get("/Location/loc-1/_history/2").get_json()["name"] == "Closed"
    assert versions.get("/Location/loc-1/_history/1").get_json()["name"] == "Hôpital Saint-Louis"


VREAD_ERRORS = [
    ("/Location/loc-h/_history/3", 410, "deleted"),
    ("/Location/loc-h/_history/4", 404, "not-found"),
    ("/Location/loc-h/_history/abc", 404, "not-found"),
    ("/Location/nope/_history/1", 404, "not-found"),
    ("/Patient/p/_history/1", 404, "not-found"),
    ("/Location/nope/_history", 404, "not-found"),
    ("/Patient/_history", 404, "not-found"),
    ("/Location/_history?_count=x", 400, "invalid"),
    ("/Location/_history?_since=yesterday", 400, "invalid"),
    ("/Location/_history?_at=2025", 400, "invalid"),
    ("/Location/loc-h", 410, "deleted"),
    ("/Location/_history?_format=xml", 406, "not-supported"),
]


@pytest.mark.parametrize("url,status,code", VREAD_ERRORS)
def test_history_errors(versions, url, status, code):
    response = versions.get(url)
    assert response.status_code == status
    assert response.get_json()["issue"][0]["code"] == code


@pytest.mark.parametrize("if_none_match,status", [
    ('W/"2"', 304), ('"2"', 304), ('W/"1", W/"2"', 304), ("*", 304), ('W/"1"', 200), ('W/"3"', 200),
])
def test_if_none_match(versions, if_none_match, status):
    response = versions.get("/Location/loc-1", headers={"If-None-Match": if_none_match})
    assert response.status_code == status
    assert response.headers["ETag"] == 'W/"2"'
    assert (response.data == b"") == (status == 304)


def test_pretty_history(versions):
    response = versions.get("/Location/loc-h/_history?_pretty=true")
    assert response.data.startswith(b'{\n  "resourceType": "Bundle"')


# --- the store ------------------------------------------------------------------------------------

def test_store_keeps_every_version(db_url):
    store = open_store(db_url, clock=fixed_clock)
    try:
        study = sample_resources()[0]
        store.put_many([study])
        store.put_many([study])  # unchanged: no version
        store.put_many([{**study, "title": "Two"}, {**study, "title": "Three"}])
        page = store.history("ResearchStudy", "rs-1")
        assert [(e.version, e.method, e.created) for e in page.entries] == [(3, "PUT", False), (2, "PUT", False),
                                                                            (1, "PUT", True)]
        assert orjson.loads(store.read_version("ResearchStudy", "rs-1", 2).json)["title"] == "Two"
        assert store.read_version("ResearchStudy", "rs-1", 4) is None
        deleted = store.write(lambda tx: tx.delete("ResearchStudy", "rs-1"))
        assert deleted.version == 4 and deleted.outcome == "deleted"
        assert store.write(lambda tx: tx.delete("ResearchStudy", "rs-1")) is None
        assert store.read("ResearchStudy", "rs-1") is None
        assert store.head("ResearchStudy", "rs-1") == ("ResearchStudy", "rs-1", 4, FIXED_INSTANT, True)
        assert store.put_many([study]) == [("ResearchStudy", "rs-1", 5, True)]  # same content, but re-created
    finally:
        store.close()


def test_a_failed_write_leaves_no_version(db_url):
    store = open_store(db_url, clock=fixed_clock)
    try:
        def fail(tx):
            tx.put([sample_resources()[0]])
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            store.write(fail)
        assert store.history().total == 0 and store.read("ResearchStudy", "rs-1") is None
    finally:
        store.close()


@pytest.mark.parametrize("layout", [None, 1, 4])
def test_a_database_of_another_storage_layout_is_refused(tmp_path, layout):
    """A database written by an older fhirstudy (no layout row, or layout 1) is not searched
    with the wrong index: opening it fails with a message saying what to do, and changes nothing."""
    from fhirstudy.errors import StoreError
    from fhirstudy.store.sql import schema

    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = open_store(url, clock=fixed_clock)
    store.put_many(sample_resources()[:3])
    with store.engine.begin() as conn:
        if layout is None:
            schema.drop(conn)
        else:
            conn.execute(sa.update(schema).values(version=layout))
    store.close()
    with pytest.raises(StoreError, match=f"storage layout {layout or 1}.*load the data again"):
        open_store(url, clock=fixed_clock)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(history_table)).scalar_one() == 3
    engine.dispose()


def test_the_current_version_is_stored_once_and_moves_to_history_when_superseded(tmp_path):
    """The newest version's bytes live in ``resource`` only; an update moves them into the old
    version's history row, a delete too; vread gives every version's bytes either way."""
    from fhirstudy.store.sql import resource as resource_table

    url = f"sqlite:///{tmp_path / 'once.db'}"
    store = open_store(url, clock=fixed_clock)
    try:
        study = sample_resources()[0]
        store.put_many([study])
        first = store.read("ResearchStudy", "rs-1")

        def contents():
            with store.engine.connect() as conn:
                return conn.execute(sa.select(history_table.c.version, history_table.c.content)
                                    .join(resource_table, resource_table.c.pk == history_table.c.resource_pk)
                                    .where(resource_table.c.id == "rs-1").order_by(history_table.c.version)).all()

        assert contents() == [(1, None)]
        store.put_many([{**study, "title": "Changed"}, {**study, "title": "Changed again"}])
        assert [(v, store.codec.decode(c) if c else c) for v, c in contents()] == [
            (1, first), (2, store.read_version("ResearchStudy", "rs-1", 2).json), (3, None)]
        assert b"Changed again" in store.read_version("ResearchStudy", "rs-1", 3).json
        assert b'"Changed"' in store.read_version("ResearchStudy", "rs-1", 2).json
        store.write(lambda tx: tx.delete("ResearchStudy", "rs-1"))
        assert contents()[2][1] is not None and contents()[3] == (4, None)
        assert store.read_version("ResearchStudy", "rs-1", 4).deleted
        assert b"Changed again" in store.read_version("ResearchStudy", "rs-1", 3).json
        assert [e.version for e in store.history("ResearchStudy", "rs-1").entries] == [4, 3, 2, 1]
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(resource_table.c.deleted).where(resource_table.c.id == "rs-1")).scalar()
    finally:
        store.close()
