"""Search entries in batch and transaction Bundles over real HTTP: ``GET Type?params`` answers with
the same searchset Bundle the REST search gives (paging links under the server's base), a bad
parameter is an OperationOutcome in its batch entry (and fails a transaction before any write);
push uses :meth:`FhirClient.batch_search` against fhirstudy's own server, without private attributes."""
from __future__ import annotations


import pytest
import requests

from _server_fixtures import FHIR_HEADERS, WRITE_TOKEN, sample_resources, serve_in_thread
from fhirstudy.errors import RemoteRejected
from fhirstudy.push import FhirClient
from fhirstudy.push.push import Pusher



@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """fhirstudy's server with the sample resources, writable, over real HTTP (its own base URL)."""
    from fhirstudy.server import STORE_EXTENSION, close_store, create_app

    db = tmp_path_factory.mktemp("batch-search") / "store.db"
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{db}", "WRITE_TOKEN": WRITE_TOKEN})
    app.extensions[STORE_EXTENSION].put_many(sample_resources())
    with serve_in_thread(app) as url:
        yield url
    close_store(app)


def _post(url: str, bundle: dict) -> requests.Response:
    return requests.post(url, json=bundle, headers=FHIR_HEADERS, timeout=30)


def _batch(kind: str, *urls: str) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": [{"request": {"method": "GET", "url": u}} for u in urls]}


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_search_entry_is_the_rest_searchset(server, kind):
    response = _post(server, _batch(kind, "ResearchStudy?title=breast", "ResearchStudy/rs-1", "Location"))
    assert response.status_code == 200
    search, read, every = response.json()["entry"]
    assert search["response"]["status"] == "200 OK" and read["response"]["status"] == "200 OK"
    rest = requests.get(f"{server}/ResearchStudy", params={"title": "breast"}, timeout=30).json()
    assert search["resource"] == rest and rest["type"] == "searchset" and rest["total"] == 1
    assert read["resource"]["id"] == "rs-1"
    assert every["resource"]["type"] == "searchset" and every["resource"]["total"] == 2


def test_paging_links_in_the_entry_bundle_work(server):
    entry = _post(server, _batch("batch", "ResearchStudy?_count=5&status=completed"))
    page = entry.json()["entry"][0]["resource"]
    links = {lk["relation"]: lk["url"] for lk in page["link"]}
    assert links["self"].startswith(f"{server}/ResearchStudy?") and "next" in links
    seen = [e["resource"]["id"] for e in page["entry"]]
    url = links["next"]
    while url:
        nxt = requests.get(url, timeout=30).json()
        seen += [e["resource"]["id"] for e in nxt["entry"]]
        url = next((lk["url"] for lk in nxt["link"] if lk["relation"] == "next"), None)
    assert len(seen) == len(set(seen)) == page["total"]


def test_bad_search_in_a_batch_is_an_outcome_in_its_entry(server):
    response = _post(server, _batch("batch", "ResearchStudy?bogus=1", "Patient?name=x", "ResearchStudy?_id=rs-2"))
    assert response.status_code == 200
    bad, unserved, good = response.json()["entry"]
    assert bad["response"]["status"] == "400 Bad Request"
    assert bad["response"]["outcome"]["issue"][0]["expression"] == ["bogus"]
    assert unserved["response"]["status"] == "404 Not Found" and "outcome" in unserved["response"]
    assert good["resource"]["entry"][0]["resource"]["id"] == "rs-2"


def test_bad_search_fails_a_transaction_before_any_write(server):
    study = {"resourceType": "ResearchStudy", "id": "rs-tx", "status": "active", "title": "Never written"}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": study, "request": {"method": "PUT", "url": "ResearchStudy/rs-tx"}},
        {"request": {"method": "GET", "url": "ResearchStudy?bogus=1"}}]}
    response = _post(server, bundle)
    assert response.status_code == 400 and "Bundle.entry[1]" in str(response.json())
    assert requests.get(f"{server}/ResearchStudy/rs-tx", timeout=30).status_code == 404


def test_transaction_search_sees_the_transactions_writes(server):
    study = {"resourceType": "ResearchStudy", "id": "rs-seen", "status": "active", "title": "Zebrafish model"}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "ResearchStudy?title=zebrafish"}},
        {"resource": study, "request": {"method": "PUT", "url": "ResearchStudy/rs-seen"}}]}
    search, written = _post(server, bundle).json()["entry"]
    assert written["response"]["status"] == "201 Created"
    assert [e["resource"]["id"] for e in search["resource"]["entry"]] == ["rs-seen"]


def test_client_batch_search(server):
    client = FhirClient(server, token=WRITE_TOKEN)
    found = client.batch_search([("ResearchStudy", {"_id": "rs-1"}), ("Location", {"name": "nowhere-at-all"})])
    assert [[r["id"] for r in matches] for matches in found] == [["rs-1"], []]
    with pytest.raises(RemoteRejected) as caught:
        client.batch_search([("ResearchStudy", {"bogus": "1"})])
    assert caught.value.status == 400


class NoBatchSearch(FhirClient):
    """A client of a store that answers no searches inside a batch (as some servers do)."""

    def batch_search(self, searches):
        raise RemoteRejected("batch search: 400 Bad Request", url=self.base_url, status=400)


@pytest.mark.parametrize("client_class,expected", [(FhirClient, True), (NoBatchSearch, False)])
def test_push_reads_by_batch_search_when_the_store_takes_it(server, client_class, expected):
    """Pushing the same trials twice: the second run reads what is stored (batch search against
    fhirstudy's own server, OR searches where batch search is refused) and finds it unchanged.
    What was learnt is the Pusher's public ``batch_search``; the client carries no private flag."""
    from fhirstudy.pipeline import convert
    from _peer_fixtures import sample_inputs

    trials = [[e["resource"] for e in c.bundle["entry"]] for c in convert(sample_inputs()) if c.ok][:3]
    client = client_class(server, token=WRITE_TOKEN)
    Pusher(client).run(trials)
    again = Pusher(client)
    report = again.run(trials)
    assert report.counts["unchanged"] == len(trials) and report.counts["failed"] == 0
    assert again.batch_search is expected
    assert not [name for name in vars(client) if "batch" in name]


def test_capability_statement_says_batch_searches(server):
    rest = requests.get(f"{server}/metadata", timeout=30).json()["rest"][0]
    documented = {i["code"]: i.get("documentation", "") for i in rest["interaction"]}
    assert "searchset" in documented["batch"] and "searchset" in documented["transaction"]
