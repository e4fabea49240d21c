"""The compact storage layout (#15), on SQLite and PostgreSQL: stored JSON is compressed with a
dictionary the database keeps and decoded in one place (every read gives the bytes written, and
rows written with an older dictionary still read), index texts are terms, ``_lastUpdated`` and
``_source`` are answered from ``resource``'s columns and address parts from their address's rows,
all with the answers of the index rows they replace; and a database stays small."""
from __future__ import annotations

import copy
import json
import threading

import orjson
import pytest
import sqlalchemy as sa
import zstandard

from _server_fixtures import db_url, pg_server, pg_url  # noqa: F401
from conftest import SAMPLES, SEEDS
from fhirstudy.errors import StoreError
from fhirstudy.pipeline import convert
from fhirstudy.search import load_registry, parse_search
from fhirstudy.search.index import date_range
from fhirstudy.store import open_store
from fhirstudy.store.content import _FORMAT
from fhirstudy.store.schema import dictionary, history, resource, term
from fhirstudy.store.writes import with_meta
from fhirstudy.terminology import normalize_text

STUDIES_FOR_SIZE = 120
# KB of database per study of generated studies (SQLite file after a checkpoint); the layout
# before #15 took about 190 KB per study of such studies (bench/search.py, 2,000), this one 45
SIZE_BOUND_KB = 60


@pytest.fixture(scope="module")
def resources() -> list[dict]:
    return [e["resource"] for c in convert([SEEDS, SAMPLES], unmapped=False) if c.ok for e in c.bundle["entry"]]


def _search(store, rtype: str, query: str):
    pairs = [tuple(part.split("=", 1)) for part in query.split("&") if part]
    return store.search(parse_search(rtype, pairs, store.registry))


def _ids(store, rtype: str, query: str) -> list[str]:
    """Every match's id, in order, page after page."""
    pairs = [tuple(part.split("=", 1)) for part in f"{query}&_count=200".split("&") if part]
    parsed, out = parse_search(rtype, pairs, store.registry), []
    while True:
        result = store.search(parsed)
        out.extend(e.id for e in result.entries)
        if result.next_cursor is None:
            return out
        parsed.cursor = result.next_cursor


def _dict_ids(store) -> set[int]:
    with store.engine.connect() as conn:
        blobs = [*conn.execute(sa.select(resource.c.content).where(resource.c.deleted.is_(False))).scalars(),
                 *conn.execute(sa.select(history.c.content).where(history.c.content.is_not(None))).scalars()]
    return {zstandard.get_frame_parameters(bytes(b), format=_FORMAT).dict_id for b in blobs}


# -- the stored bytes ----------------------------------------------------------------------------


def test_every_stored_resource_reads_back_byte_identical(db_url, resources):
    """Read, vread, history, search, include and an export snapshot give every resource's JSON
    exactly as written: the resource with its meta, serialised as the store always did."""
    store = open_store(db_url)
    try:
        written = store.write(lambda tx: tx.put(copy.deepcopy(resources)))
        assert len(written) == len(resources)
        expected = {(w.type, w.id): w.json for w in written}
        for r, w in zip(resources, written):
            assert w.json == orjson.dumps(with_meta(r, 1, w.last_updated))
            assert store.read(w.type, w.id) == w.json
            assert store.read_version(w.type, w.id, 1).json == w.json
        versions = store.history(count=len(resources) + 10).entries
        assert {(e.type, e.id): e.json for e in versions} == expected
        for rtype in {t for t, _ in expected}:
            ids = [i for t, i in expected if t == rtype]
            for start in range(0, len(ids), 100):
                found = _search(store, rtype, f"_id={','.join(ids[start:start + 100])}&_count=100").entries
                assert {(e.type, e.id): e.json for e in found} == {(rtype, i): expected[(rtype, i)]
                                                                   for i in ids[start:start + 100]}
        studies = _search(store, "ResearchStudy", "_include=ResearchStudy:site&_count=20")
        for entry in [*studies.entries, *studies.included]:
            assert entry.json == expected[(entry.type, entry.id)]
        with store.snapshot() as snapshot:
            for rtype in {t for t, _ in expected}:
                for page in snapshot.pages(rtype):
                    for entry in page:
                        assert entry.json == expected[(rtype, entry.id)]
        assert _dict_ids(store) == {1}  # every row names the default dictionary
    finally:
        store.close()


def test_rows_written_with_one_dictionary_read_after_another_is_trained(db_url, resources):
    """Dictionary 2, trained from the stored resources, compresses what is written after it;
    rows of dictionary 1 (current versions and the history an update moves them into) still
    read, in this store and in one opened afresh."""
    half = len(resources) // 2
    store = open_store(db_url)
    try:
        first = store.write(lambda tx: tx.put(copy.deepcopy(resources[:half])))
        assert store.train_dictionary() == 2
        second = store.write(lambda tx: tx.put(copy.deepcopy(resources[half:])))
        changed = {**resources[0], "meta": {"tag": [{"code": "changed"}]}}
        update = store.update(changed)
        assert update.version == 2 and _dict_ids(store) == {1, 2}
    finally:
        store.close()
    again = open_store(db_url)
    try:
        with again.engine.connect() as conn:
            assert sorted(conn.execute(sa.select(dictionary.c.id)).scalars()) == [1, 2]
        for w in first[1:] + second:
            assert again.read(w.type, w.id) == w.json
        assert again.read_version(first[0].type, first[0].id, 1).json == first[0].json
        assert again.read(update.type, update.id) == update.json
        assert again.train_dictionary() == 3  # and a third, for what comes after
        assert again.read(first[1].type, first[1].id) == first[1].json
    finally:
        again.close()


def test_a_value_naming_a_dictionary_the_database_lacks_is_an_error(tmp_path, resources):
    """Bytes compressed with a dictionary that is gone are refused with a message, never
    returned as something else."""
    url = f"sqlite:///{tmp_path / 'lost.db'}"
    store = open_store(url)
    store.put_many(copy.deepcopy(resources[:20]))
    store.train_dictionary()
    store.put_many([{**resources[0], "title": "Written with dictionary 2"}])
    with store.engine.begin() as conn:
        conn.execute(sa.delete(dictionary).where(dictionary.c.id == 2))
    store.close()
    again = open_store(url)
    try:
        assert again.read(resources[1]["resourceType"], resources[1]["id"]) is not None
        with pytest.raises(StoreError, match="compression dictionary 2"):
            again.read(resources[0]["resourceType"], resources[0]["id"])
    finally:
        again.close()


def test_a_dictionary_needs_stored_resources_to_learn_from(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(StoreError, match="at least 10 stored resources"):
            store.train_dictionary()
    finally:
        store.close()


# -- size ----------------------------------------------------------------------------------------


def _generated(resources: list[dict], count: int):
    """``count`` studies replicated from the converted ones with new ids (as bench/search.py)."""
    by_study: dict[str, list[dict]] = {}
    study = None
    for r in resources:
        if r["resourceType"] == "ResearchStudy":
            study = r["id"]
        by_study.setdefault(study, []).append(r)
    templates = [json.dumps(t) for t in by_study.values()]
    ids = list(by_study)
    for n in range(count):
        old = ids[n % len(ids)]
        text = templates[n % len(ids)].replace(f'"{old}', f'"gen-{n:05d}').replace(f'/{old}', f'/gen-{n:05d}')
        yield json.loads(text)


def test_a_database_of_generated_studies_stays_small(tmp_path, resources):
    """A regression guard on the layout, not a timing: KB per study of a SQLite file."""
    path = tmp_path / "size.db"
    store = open_store(f"sqlite:///{path}")
    try:
        batch = [r for study in _generated(resources, STUDIES_FOR_SIZE) for r in study]
        store.put_many(batch)
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
    size = sum(p.stat().st_size for p in tmp_path.glob("size.db*"))
    assert size / STUDIES_FOR_SIZE / 1000 < SIZE_BOUND_KB


# -- parameters answered from resource columns and whole parameters' rows ---------------------


INSTANTS = ["2025-03-04T05:06:07.008Z", "2025-03-04T05:06:07.009Z", "2025-03-05T00:00:00.000Z",
            "2024-12-31T23:59:59.999Z"]
LAST_UPDATED = ["2025-03-04T05:06:07.008", "2025-03-04T05:06:07", "2025-03-04", "2025-03", "2025",
                "2025-03-04T05:06:07.008Z", "2025-03-04T06:06:07.008+01:00", "2024-12-31T23:59:59.999",
                "2025-03-05T00:00:00.000"]


def _admits(prefix: str, low: str, high: str, value: str) -> bool:
    """What an index row of one instant (low and high equal to it) said (FHIR R5 3.2.1.5.6)."""
    return {"eq": low <= value <= high, "ne": not low <= value <= high, "gt": value > high, "lt": value < low,
            "ge": value >= low, "le": value <= high, "sa": value > high, "eb": value < low,
            "ap": low <= value <= high}[prefix]


def test_last_updated_from_the_resource_row_answers_as_its_index_rows_did(db_url):
    clock = iter(INSTANTS)
    store = open_store(db_url, clock=lambda: next(clock))
    try:
        for n, _ in enumerate(INSTANTS):
            store.update({"resourceType": "ResearchStudy", "id": f"lu-{n}", "status": "active"})
        stored = {f"lu-{n}": instant[:23] for n, instant in enumerate(INSTANTS)}
        for value in LAST_UPDATED:
            low, high = date_range(value)
            for prefix in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"):
                expected = sorted(i for i, at in stored.items() if _admits(prefix, low, high, at))
                assert sorted(_ids(store, "ResearchStudy", f"_lastUpdated={prefix}{value}")) == expected, (prefix, value)
        assert _ids(store, "ResearchStudy", "_sort=-_lastUpdated") == ["lu-2", "lu-1", "lu-0", "lu-3"]
        assert _ids(store, "ResearchStudy", "_lastUpdated:missing=true") == []
        assert [e.last_updated for e in store.history().entries] == list(reversed(INSTANTS))
    finally:
        store.close()


def _with_source(resources: list[dict]) -> list[dict]:
    """The resources, the first three studies and one in five of the others without ``meta.source``."""
    out = copy.deepcopy(resources)
    studies = [r for r in out if r["resourceType"] == "ResearchStudy"]
    for n, r in enumerate(out):
        if n % 5 == 4 or r in studies[:3]:
            r.get("meta", {}).pop("source", None)
    return out


def test_source_from_the_resource_row_answers_as_its_index_rows_did(db_url, resources):
    store = open_store(db_url)
    try:
        stored = _with_source(resources)
        store.put_many(stored)
        studies = [r for r in stored if r["resourceType"] == "ResearchStudy"]
        sources = sorted({r["meta"]["source"] for r in studies if r.get("meta", {}).get("source")})
        assert len(sources) > 3
        for source in sources[:4]:
            expected = sorted(r["id"] for r in studies if r.get("meta", {}).get("source") == source)
            assert sorted(_ids(store, "ResearchStudy", f"_source={source}")) == expected
        without = sorted(r["id"] for r in studies if not r.get("meta", {}).get("source"))
        assert without and sorted(_ids(store, "ResearchStudy", "_source:missing=true")) == without
        assert len(_ids(store, "ResearchStudy", "_source:missing=false")) == len(studies) - len(without)
        assert _ids(store, "ResearchStudy", "_source=urn:nothing") == []
        order = _ids(store, "ResearchStudy", "_sort=_source")
        expected_order = sorted(studies, key=lambda r: (r.get("meta", {}).get("source") is None,
                                                        r.get("meta", {}).get("source") or ""))
        assert [orjson.loads(store.read("ResearchStudy", i)).get("meta", {}).get("source") for i in order] == \
            [r.get("meta", {}).get("source") for r in expected_order]
        located = [r for r in stored if r["resourceType"] == "Location" and r.get("meta", {}).get("source")]
        site_source = located[0]["meta"]["source"]
        pointing = sorted({s["id"] for s in studies for site in s.get("site", [])
                           if any(loc["id"] == site["reference"].split("/")[-1] for loc in located
                                  if loc["meta"]["source"] == site_source)})
        assert sorted(_ids(store, "ResearchStudy", f"site._source={site_source}")) == pointing
        gone = next(r for r in studies if r.get("meta", {}).get("source"))
        assert gone["id"] in _ids(store, "ResearchStudy", f"_source={gone['meta']['source']}")
        store.delete("ResearchStudy", gone["id"])
        assert gone["id"] not in _ids(store, "ResearchStudy", f"_source={gone['meta']['source']}")
    finally:
        store.close()


PARTS = {"address-city": "city", "address-state": "state", "address-country": "country",
         "address-postalcode": "postalCode"}


def test_address_parts_answer_from_their_address_rows(db_url, resources):
    """``address-city`` and the like have no rows of their own: ``address``'s rows of that
    part answer them, as their own rows did (starts-with, :exact, :contains, :missing, _sort)."""
    registry = load_registry()
    assert registry.get("Location", "address-city").part_of == ("address", 7)
    store = open_store(db_url)
    try:
        store.put_many(copy.deepcopy(resources))
        locations = [r for r in resources if r["resourceType"] == "Location"]
        for code, part in PARTS.items():
            values = sorted({r["address"][part] for r in locations if r.get("address", {}).get(part)})
            assert values, code
            for value in values[:3]:
                head = normalize_text(value)[:3]
                expected = sorted(r["id"] for r in locations
                                  if normalize_text(r.get("address", {}).get(part, "")).startswith(head))
                assert sorted(_ids(store, "Location", f"{code}={head}")) == expected, (code, head)
                exact = sorted(r["id"] for r in locations if r.get("address", {}).get(part) == value)
                assert sorted(_ids(store, "Location", f"{code}:exact={value}")) == exact
                assert _ids(store, "Location", f"{code}:exact={value.swapcase()}") == [] or value.swapcase() == value
                middle = normalize_text(value)[1:4] or normalize_text(value)
                contains = sorted(r["id"] for r in locations
                                  if middle in normalize_text(r.get("address", {}).get(part, "")))
                assert sorted(_ids(store, "Location", f"{code}:contains={middle}")) == contains
            missing = sorted(r["id"] for r in locations if not r.get("address", {}).get(part))
            assert sorted(_ids(store, "Location", f"{code}:missing=true")) == missing
        order = _ids(store, "Location", "_sort=address-city")
        cities = [normalize_text(orjson.loads(store.read("Location", i)).get("address", {}).get("city", "\U0010ffff"))
                  for i in order]
        assert cities == sorted(cities)
        for r in locations[:5]:  # the whole parameter still searches every part
            for part in ("city", "country"):
                if r.get("address", {}).get(part):
                    assert r["id"] in _ids(store, "Location", f"address:exact={r['address'][part]}")
        city = next(r for r in locations if r.get("address", {}).get("city"))
        assert city["id"] not in _ids(store, "Location", f"address-country:exact={city['address']['city']}")
    finally:
        store.close()


# -- terms -----------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_two_writers_adding_the_same_new_text_do_not_wait_for_each_other(pg_url):
    """A write holding a new term uncommitted does not hold up another write of the same text
    (no unique index to wait on): each adds its own term, and a search finds both resources."""
    store, other = open_store(pg_url), open_store(pg_url)
    held, release, failures = threading.Event(), threading.Event(), []

    def slow(tx):
        tx.put([{"resourceType": "ResearchStudy", "id": "held", "status": "active", "keyword": [{"text": "zq"}],
                 "identifier": [{"system": "urn:new", "value": "zq-1"}]}])
        held.set()
        assert release.wait(30)

    def run():
        try:
            other.write(slow)
        except Exception as exc:  # reported below
            failures.append(exc)

    def quick():
        try:
            store.update({"resourceType": "ResearchStudy", "id": "quick", "status": "active",
                          "identifier": [{"system": "urn:new", "value": "zq-2"}]})
            done.set()
        except Exception as exc:  # reported below
            failures.append(exc)

    done = threading.Event()
    thread, second = threading.Thread(target=run), threading.Thread(target=quick)
    thread.start()
    try:
        assert held.wait(30)
        second.start()
        assert done.wait(30)  # committed while "held" still holds its uncommitted term
    finally:
        release.set()
        thread.join(30)
        second.join(30)
    try:
        assert not failures
        assert sorted(_ids(store, "ResearchStudy", "identifier=urn:new|")) == ["held", "quick"]
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(term)
                                .where(term.c.text == "urn:new")).scalar_one() == 2
    finally:
        store.close()
        other.close()
