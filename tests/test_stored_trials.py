"""``push.stored.stored_trials`` streams the trials a repository holds page by page and gives the
same trials as the CLI's whole-store reader (``cli._db_trials``) on the seeds and samples, also when
a page's includes are cut off at the store's cap (then its studies are read one by one)."""
from __future__ import annotations

import pytest

from _peer_fixtures import sample_inputs
from fhirstudy import cli
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
    yield url, store, list(cli._db_trials(url))
    store.close()


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
