"""``push.stored.stored_trials`` streams the trials a repository holds page by page and gives the
same trials as reading the whole store and grouping every resource under the study its id hangs
off (what ``push --from-db`` did before, kept here as the oracle) on the seeds and samples, also
when a page's includes are cut off at the store's cap (then its studies are read one by one)."""
from __future__ import annotations

import pytest

from _peer_fixtures import sample_inputs
import orjson

from fhirstudy.mappers import RESOURCE_ORDER
from fhirstudy.pipeline import convert
from fhirstudy.push import stored
from fhirstudy.store import open_store


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('stored') / 'store.db'}"
    store = open_store(url)
    for converted in convert(sample_inputs()):
        if converted.ok:
            store.put_many([e["resource"] for e in converted.bundle["entry"]])
    yield url, store, _whole_store_trials(store)
    store.close()


def _whole_store_trials(store) -> list[list[dict]]:
    """Every stored resource read at once, grouped under the longest study id its id starts with."""
    every = {t: [orjson.loads(b) for b in _all_bodies(store, t)] for t in RESOURCE_ORDER}
    studies = sorted(every["ResearchStudy"], key=lambda r: r["id"])
    members: dict[str, list[dict]] = {s["id"]: [] for s in studies}
    for rtype in RESOURCE_ORDER[1:]:
        for r in every[rtype]:
            owner = next((sid for sid in stored._prefixes(r["id"]) if sid in members), None)
            if owner is not None:
                members[owner].append(r)
    return [[stored._without_server_meta(r) for r in [s, *sorted(
        members[s["id"]], key=lambda r: (RESOURCE_ORDER.index(r["resourceType"]), stored._natural(r["id"])))]]
        for s in studies]


def _all_bodies(store, rtype: str) -> list[bytes]:
    import sqlalchemy as sa

    from fhirstudy.store.schema import resource
    with store.engine.connect() as conn:
        return [store.codec.decode(c) for c in conn.execute(sa.select(resource.c.content).where(
            resource.c.type == rtype, resource.c.deleted.is_(False))).scalars()]


@pytest.mark.parametrize("page_studies", [1, 3, 50])
def test_same_trials_as_the_cli_reader(loaded, page_studies):
    url, store, expected = loaded
    assert len(expected) >= 10
    assert list(stored.stored_trials(store, page_studies=page_studies)) == expected


def test_same_trials_when_includes_are_cut_off(loaded, monkeypatch):
    url, store, expected = loaded
    monkeypatch.setattr(stored, "MAX_INCLUDED", 1)
    assert list(stored.stored_trials(store, page_studies=4)) == expected


def test_streams_page_by_page(loaded, monkeypatch):
    """The first trial comes after one search of ResearchStudy, not after reading the whole store."""
    url, store, expected = loaded
    calls = []
    real = store.search
    monkeypatch.setattr(store, "search", lambda query: calls.append(query.resource_type) or real(query))
    trials = stored.stored_trials(store, page_studies=2)
    assert next(trials) == expected[0] and calls == ["ResearchStudy"]


def test_stored_trials_at_a_url(loaded):
    """What ``push --from-db`` needs: the trials of the store at a URL (one line in the CLI)."""
    url, store, expected = loaded
    assert list(stored.stored_trials_at(url)) == expected


def test_a_new_resource_type_comes_along_through_the_provenance(tmp_path, monkeypatch):
    """A type registered in mappings/resource-types.json (here Basic, put before Provenance) is pushed
    with its trial: the Provenance names it, and nothing in stored.py lists it."""
    store = open_store(f"sqlite:///{tmp_path / 'basic.db'}")
    try:
        converted = next(c for c in convert(sample_inputs()) if c.ok)
        resources = [e["resource"] for e in converted.bundle["entry"]]
        study = resources[0]["id"]
        basic = {"resourceType": "Basic", "id": f"{study}-basic", "code": {"text": "a new kind of resource"}}
        provenance = resources[-1]
        assert provenance["resourceType"] == "Provenance"
        provenance["target"].append({"reference": f"Basic/{basic['id']}"})
        store.put_many([*resources, basic])
        monkeypatch.setattr(stored, "ORDER", (*RESOURCE_ORDER[:-1], "Basic", "Provenance"))
        [trial] = list(stored.stored_trials(store))
        assert [r["resourceType"] for r in trial][-2:] == ["Basic", "Provenance"]
        assert trial[-2]["id"] == basic["id"]
        monkeypatch.setattr(stored, "MAX_INCLUDED", 1)  # and when read one by one
        assert list(stored.stored_trials(store)) == [trial]
    finally:
        store.close()
