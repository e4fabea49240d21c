"""Search parameters that change: a store whose index was built for other parameters is refused,
``fhirstudy reindex`` rebuilds it (online: searches and writes go on meanwhile), on a SQLite file
and a real PostgreSQL server."""
from __future__ import annotations

import pytest

from _server_fixtures import fixed_clock, pg_server, pg_url, sample_resources  # noqa: F401
from fhirstudy.errors import IndexOutdated
from fhirstudy.search import load_registry, parse_search
from fhirstudy.search.registry import Registry, read_definitions
from fhirstudy.store import open_store
from fhirstudy.store.reindex import reindex
from fhirstudy.store.state import registry_hash


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    """A SQLite file or a PostgreSQL database holding the sample resources (default registry)."""
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    store = open_store(url, clock=fixed_clock)
    store.put_many(sample_resources())
    store.close()
    return url


def _with_headline() -> Registry:
    """The default registry plus ``headline``, a copy of ResearchStudy's ``title``."""
    definitions = read_definitions()
    title = next(d for d in definitions if d["code"] == "title" and "ResearchStudy" in d.get("base", []))
    headline = {**title, "code": "headline", "url": "https://fhirstudy.org/fhir/SearchParameter/headline"}
    return Registry([*definitions, headline])


def _ids(store, registry, *pairs) -> list[str]:
    return [e.id for e in store.search(parse_search("ResearchStudy", list(pairs), registry)).entries]


def test_the_hash_follows_what_decides_the_index_rows():
    assert registry_hash(load_registry()) == registry_hash(Registry(read_definitions()))
    assert registry_hash(_with_headline()) != registry_hash(load_registry())


def test_another_registry_is_refused_until_reindexed(url):
    registry = _with_headline()
    with pytest.raises(IndexOutdated, match=r"fhirstudy reindex --db "):
        open_store(url, registry)
    store = open_store(url, registry, check_index=False)
    try:
        assert _ids(store, registry, ("headline", "breast")) == []  # what refusing prevents
        report = reindex(store, batch=7)
        assert report.resources == len(sample_resources())
        assert _ids(store, registry, ("headline", "breast")) == ["rs-3"]
        assert _ids(store, registry, ("title", "breast")) == ["rs-3"]
    finally:
        store.close()
    open_store(url, registry).close()  # accepted now
    with pytest.raises(IndexOutdated):
        open_store(url)  # and the old parameters are the outdated ones


def test_reindex_runs_online_and_redoes_what_was_written_meanwhile(url):
    """Between two of its transactions another process (with the old parameters) searches and
    writes; what it wrote is rebuilt too, and once the reindex is done its writes are refused."""
    registry = _with_headline()
    old = open_store(url, clock=fixed_clock)
    new = open_store(url, registry, check_index=False)
    seen = []

    def meanwhile(done: int, total: int) -> None:
        if not seen:
            seen.append(_ids(old, load_registry(), ("title", "breast")))
            old.put_many([{"resourceType": "ResearchStudy", "id": "rs-new", "status": "active",
                           "title": "Breast screening written during the reindex"}])
            old.write(lambda tx: tx.delete("ResearchStudy", "rs-3"))

    try:
        report = reindex(new, batch=5, progress=meanwhile)
        assert seen == [["rs-3"]]
        assert report.rewritten == 2
        assert _ids(new, registry, ("headline", "breast")) == ["rs-new"]
        with pytest.raises(IndexOutdated, match="restart"):
            old.put_many([{"resourceType": "ResearchStudy", "id": "rs-late", "status": "active"}])
        assert new.read("ResearchStudy", "rs-late") is None
    finally:
        old.close()
        new.close()


def test_a_new_database_records_the_hash_of_its_registry(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    open_store(url, _with_headline()).close()
    open_store(url, _with_headline()).close()
    with pytest.raises(IndexOutdated):
        open_store(url)


def test_the_reindex_command(tmp_path, capsys):
    from fhirstudy.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = open_store(url, _with_headline())
    store.put_many(sample_resources())
    store.close()
    with pytest.raises(IndexOutdated):
        open_store(url)
    assert main(["reindex", "--db", url, "--batch", "10"]) == 0
    assert capsys.readouterr().err.startswith(f"reindexed {len(sample_resources())} resources (0 written meanwhile")
    store = open_store(url)
    try:
        assert _ids(store, load_registry(), ("title", "breast")) == ["rs-3"]
    finally:
        store.close()
