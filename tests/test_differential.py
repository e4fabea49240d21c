"""Differential test: the same bundles in fhirstudy and in the peer FHIR server (Medplum's engine,
``../shared/peer-fhir --fhir r5``), the same searches against both, the same result ids.

Every converted transaction Bundle of ``seeds/`` and ``../shared/ctgov-samples`` (as ``fhirstudy
convert`` writes them) is POSTed to both servers.  Each search in ``SEARCHES`` is run on both, every
page followed, and the ids compared (for ``_include``/``_revinclude``, type/id and search mode).
A difference is either a fhirstudy bug (fixed) or a peer deviation from the specification, listed
in ``EXPECTED_DIFFERENCES`` with the words of the specification: the test fails if a listed
difference goes away (the table must stay true) or an unlisted one appears.

The peer is started once for this module on a free port and stopped in a ``finally``; without
Node.js/npm or the peer tooling the module is skipped, saying what is missing.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from _server_fixtures import FHIR_HEADERS

ROOT = Path(__file__).resolve().parents[1]
PEER_DIR = Path(os.environ.get("FHIRSTUDY_PEER_DIR", Path(__file__).resolve().parents[2] / "shared" / "peer-fhir"))
SAMPLES = Path(os.environ.get("FHIRSTUDY_SHARED_DIR", ROOT.parent / "shared")) / "ctgov-samples"
PEER_START_TIMEOUT = 600  # seconds: the first start runs npm ci
PAGE = 200
CT = "https://fhirstudy.org/fhir/CodeSystem/condition"
MESH = "https://www.nlm.nih.gov/mesh"
NCT = "https://clinicaltrials.gov"
STATUS = "http://hl7.org/fhir/research-study-status"
PHASE = "http://hl7.org/fhir/research-study-phase"

pytestmark = pytest.mark.peer

# (type, query string as sent: values already URL-encoded where needed)
SEARCHES = [
    # --- token: code, system|code, |code, system|, :not, :text, :missing, OR, AND -------------------
    ("ResearchStudy", "condition=breast-cancer"),
    ("ResearchStudy", f"condition={CT}|breast-cancer"),
    ("ResearchStudy", f"condition={MESH}|D001943"),
    ("ResearchStudy", "condition=D001943"),
    ("ResearchStudy", f"condition={MESH}|"),
    ("ResearchStudy", "condition=|breast-cancer"),
    ("ResearchStudy", "condition=breast-cancer,D003550"),
    ("ResearchStudy", "condition=breast-cancer&phase=phase-2"),
    ("ResearchStudy", "condition:not=breast-cancer"),
    ("ResearchStudy", "condition:text=breast"),
    ("ResearchStudy", "condition:text=cystic"),
    ("ResearchStudy", "condition:missing=true"),
    ("ResearchStudy", "condition:missing=false"),
    ("ResearchStudy", "phase=phase-2"),
    ("ResearchStudy", f"phase={PHASE}|phase-3"),
    ("ResearchStudy", "phase=phase-1,phase-1-phase-2"),
    ("ResearchStudy", "phase:not=phase-2"),
    ("ResearchStudy", "phase:missing=true"),
    ("ResearchStudy", "phase:text=phase"),
    ("ResearchStudy", "status=active"),
    ("ResearchStudy", "status=completed"),
    ("ResearchStudy", "status:not=active"),
    ("ResearchStudy", "identifier=NCT02513394"),
    ("ResearchStudy", f"identifier={NCT}|NCT06731140"),
    ("ResearchStudy", f"identifier={NCT}|"),
    ("ResearchStudy", "identifier=|AFT-05"),
    ("ResearchStudy", "identifier=AFT-05"),
    ("ResearchStudy", "identifier:not=NCT02513394"),
    ("ResearchStudy", "identifier:missing=false"),
    ("ResearchStudy", "keyword=Palbociclib"),
    ("ResearchStudy", "keyword:text=diab"),
    ("ResearchStudy", "keyword:missing=true"),
    ("ResearchStudy", "classifier:missing=false"),
    ("ResearchStudy", "study-design:missing=false"),
    ("ResearchStudy", "region:missing=true"),
    ("ResearchStudy", "objective-type:missing=true"),
    ("ResearchStudy", "focus-code:missing=true"),
    ("ResearchStudy", "_id=nct02513394"),
    ("ResearchStudy", "_id=nct02513394,nct06731140"),
    ("ResearchStudy", "_id:not=nct02513394"),
    ("ResearchStudy", f"recruitment-status={STATUS}|recruiting"),
    ("ResearchStudy", "recruitment-status=completed"),
    ("ResearchStudy", "recruitment-status:not=completed"),
    ("ResearchStudy", "progress-status-actual=false"),
    ("ResearchStudy", "progress-status-period=ge2020"),
    ("ResearchStudy", "progress-status-period=eb2010"),
    ("ResearchStudy", "outcome-measure=EvidenceVariable/nct02513394-outcome-primary-1"),
    ("ResearchStudy", "outcome-measure:missing=true"),
    ("PlanDefinition", "status=active"),
    ("PlanDefinition", "type:missing=false"),
    ("EvidenceVariable", "status=active"),
    ("EvidenceVariable", "status:not=active"),
    ("Location", "status=active"),
    ("Location", "address-country=Greece"),
    # --- string: starts-with (case/accent), :exact, :contains, :missing ---------------------------
    ("ResearchStudy", "title=palbociclib"),
    ("ResearchStudy", "title=PALBOCICLIB%20coll"),
    ("ResearchStudy", "title=Inetetamab"),
    ("ResearchStudy", "title=breast"),
    ("ResearchStudy", "title:contains=breast"),
    ("ResearchStudy", "title:contains=HER2"),
    ("ResearchStudy", "title:exact=PALbociclib%20CoLlaborative%20Adjuvant%20Study"),
    ("ResearchStudy", "title:exact=palbociclib%20collaborative%20adjuvant%20study"),
    ("ResearchStudy", "title:missing=false"),
    ("ResearchStudy", "description:contains=breast"),
    ("ResearchStudy", "description:missing=true"),
    ("ResearchStudy", "name:missing=true"),
    ("ResearchStudy", "objective-description:missing=true"),
    ("PlanDefinition", "title=interventions"),
    ("PlanDefinition", "title:contains=cancer"),
    ("EvidenceVariable", "title=eligibility%20criteria"),
    ("EvidenceVariable", "title:contains=survival"),
    ("EvidenceVariable", "title:exact=Overall%20survival%20(OS)"),
    ("Location", "name=general"),
    ("Location", "name=hopital"),
    ("Location", "name:contains=university"),
    ("Location", "address-city=athens"),
    ("Location", "address-city:exact=Athens"),
    ("Location", "address=new%20york"),
    ("Location", "address-state:missing=false"),
    ("Location", "address-postalcode=10962"),
    # --- date: eq ne lt gt le ge sa eb ap, at year/month/day/time precision, against periods -------
    ("ResearchStudy", "date=2015"),
    ("ResearchStudy", "date=eq2015-08"),
    ("ResearchStudy", "date=ne2015"),
    ("ResearchStudy", "date=lt2010"),
    ("ResearchStudy", "date=lt2010-01-01"),
    ("ResearchStudy", "date=gt2024"),
    ("ResearchStudy", "date=gt2022-06-30"),
    ("ResearchStudy", "date=le2007-11"),
    ("ResearchStudy", "date=ge2026"),
    ("ResearchStudy", "date=ge2024-11-20"),
    ("ResearchStudy", "date=sa2020"),
    ("ResearchStudy", "date=sa2020-09-05"),
    ("ResearchStudy", "date=eb2012"),
    ("ResearchStudy", "date=eb2012-07-01"),
    ("ResearchStudy", "date=ap2018"),
    ("ResearchStudy", "date=ap2020-06-18"),
    ("ResearchStudy", "date=2014-08-05"),
    ("ResearchStudy", "date=ge2014-08-05T00:00:00Z"),
    ("ResearchStudy", "date=lt2014-08-05T12:00:00%2B02:00"),
    ("ResearchStudy", "date=ge2010&date=lt2015"),
    ("ResearchStudy", "date=lt2005,gt2025"),
    ("ResearchStudy", "date:missing=true"),
    ("ResearchStudy", "_lastUpdated=gt2000"),
    ("ResearchStudy", "_lastUpdated=lt2000"),
    # --- number: eq ne lt gt le ge sa eb ap, implicit precision ----------------------------------
    ("ResearchStudy", "recruitment-target=50"),
    ("ResearchStudy", "recruitment-target=eq611"),
    ("ResearchStudy", "recruitment-target=ne50"),
    ("ResearchStudy", "recruitment-target=lt100"),
    ("ResearchStudy", "recruitment-target=gt500"),
    ("ResearchStudy", "recruitment-target=le96"),
    ("ResearchStudy", "recruitment-target=ge448"),
    ("ResearchStudy", "recruitment-target=sa162"),
    ("ResearchStudy", "recruitment-target=eb46"),
    ("ResearchStudy", "recruitment-target=ap100"),
    ("ResearchStudy", "recruitment-target=1e2"),
    ("ResearchStudy", "recruitment-target=50.0"),
    ("ResearchStudy", "recruitment-target=10,50"),
    ("ResearchStudy", "recruitment-target:missing=true"),
    ("ResearchStudy", "recruitment-actual=gt200"),
    ("ResearchStudy", "recruitment-actual=le31"),
    ("ResearchStudy", "recruitment-actual=ap5800"),
    ("ResearchStudy", "recruitment-actual:missing=false"),
    # --- reference: Type/id, id, :Type, :missing, OR ---------------------------------------------
    ("ResearchStudy", "site=Location/nct00055081-site-1"),
    ("ResearchStudy", "site=nct00598403-site-1"),
    ("ResearchStudy", "site:Location=nct00598403-site-1"),
    ("ResearchStudy", "site=Location/nct00055081-site-1,Location/nct00598403-site-1"),
    ("ResearchStudy", "site:missing=true"),
    ("ResearchStudy", "protocol=PlanDefinition/nct02513394-protocol"),
    ("ResearchStudy", "protocol=nct02513394-protocol"),
    ("ResearchStudy", "protocol:missing=true"),
    ("ResearchStudy", "eligibility=EvidenceVariable/nct02513394-eligibility"),
    ("ResearchStudy", "eligibility:missing=false"),
    ("ResearchStudy", "part-of:missing=true"),
    ("ResearchStudy", "focus-reference:missing=true"),
    ("Provenance", "target=ResearchStudy/nct02513394"),
    ("Provenance", "target:ResearchStudy=nct02513394"),
    ("Location", "partof:missing=true"),
    # --- composite (fhirstudy defines them; the official ones name missing components) -------------
    ("ResearchStudy", "progress-status-state-actual=recruiting$true"),
    ("ResearchStudy", "progress-status-state-period=overall-study$ge2020"),
    # --- sorting and paging (compared in order) --------------------------------------------------
    ("ResearchStudy", "_sort=title"),
    ("ResearchStudy", "date=gt2000&_sort=-date"),  # (the order of ties is the server's to choose)
    ("ResearchStudy", "recruitment-target:missing=false&_sort=-recruitment-target"),
    ("ResearchStudy", "_sort=-date,_id"),
    ("ResearchStudy", "date=gt2000&_sort=-date,_id"),
    ("ResearchStudy", "_sort=-recruitment-target,_id"),
    ("ResearchStudy", "_sort=phase,-_id"),
    ("Location", "address-country=United%20States&_sort=name"),
    # --- _include / _revinclude --------------------------------------------------------------------
    ("ResearchStudy", "_id=nct02513394&_include=ResearchStudy:protocol"),
    ("ResearchStudy", "condition=breast-cancer&_include=ResearchStudy:eligibility"),
    ("ResearchStudy", "_id=nct06731140&_include=ResearchStudy:site"),
    ("PlanDefinition", "_revinclude=ResearchStudy:protocol"),
    ("EvidenceVariable", "title=eligibility&_revinclude=ResearchStudy:eligibility"),
    ("ResearchStudy", "_id=nct02513394&_include=ResearchStudy:outcome-measure"),
    ("EvidenceVariable", "_id=nct02513394-outcome-primary-1&_revinclude=ResearchStudy:outcome-measure"),
]

# Where the peer (Medplum's engine 4.5.2) departs from FHIR R5, in the specification's words: the
# R5 search page (hl7.org/fhir/R5/search.html) and the definitions of the codes in the R5 package
# (CodeSystem-search-modifier-code, CodeSystem-search-comparator, CodeSystem-sort-direction).
_TEXT = ("peer finds nothing with :text. R5 search-modifier-code 'text': \"The search parameter is "
         "processed as a string that searches text associated with the code/value - either "
         "CodeableConcept.text, Coding.display, Identifier.type.text, or Reference.display.\"")
_STARTS = ("peer matches the word anywhere in the string. R5 search, string: \"By default, a field matches "
           "a string query if the value of the field equals or starts with the supplied parameter value, "
           "after both have been normalized by case and accent.\"")
_EXACT = ("peer ignores case under :exact. R5 search-modifier-code 'exact': \"The search parameter returns "
          "resources that have a value that exactly matches the supplied parameter (the whole string, "
          "including casing and accents).\"")
_DATE_EQ = ("peer matches any overlap for eq (and its negation for ne). R5 search, date prefixes: eq means "
            "\"the range of the search value fully contains the range of the target value\", ne \"the range "
            "of the search value does not fully contain the range of the target value\".")
_NUMBER = ("peer finds no unsignedInt/positiveInt value at all (recruitment.targetNumber, actualNumber; "
           ":missing works). R5 search-comparator: eq \"the value for the parameter in the resource is equal "
           "to the provided value\", gt \"... is greater than the provided value\", and so on.")
_REF_ID = ("peer does not resolve a bare id. R5 search, reference: \"[parameter]=[id] the logical [id] of a "
           "resource using a local reference (i.e. a relative reference)\"; search-modifier-code 'type': "
           "\"The search parameter only applies to the Resource Type specified as a modifier\".")
_COMPOSITE = ("peer: \"Composite search parameter ... is not supported by this in-memory server\" (400). R5 "
              "search, composite: \"[parameter]=[value1]$[value2]\" matches when both components match in "
              "the same element (here fhirstudy's own definitions, published as SearchParameter resources).")
_SORT_KEYS = ("given several sort keys, the peer orders by the last one only. R5 search, _sort: \"a "
              "comma-separated list of sort rules in priority order\".")
_SORT_STRING = ("peer's order of names is not ascending: it puts 'Mayo Clinic' after 'Mayo Clinic-Rochester'. "
                "R5 sort-direction 'ascending': \"Sort by the value ascending, so that lower values appear "
                "first.\"")
EXPECTED_DIFFERENCES: dict[tuple[str, str], str] = {
    ("ResearchStudy", "condition:text=breast"): _TEXT,
    ("ResearchStudy", "condition:text=cystic"): _TEXT,
    ("ResearchStudy", "phase:text=phase"): _TEXT,
    ("ResearchStudy", "keyword:text=diab"): _TEXT,
    ("ResearchStudy", "keyword=Palbociclib"): (
        "peer matches a code against CodeableConcept.text. R5 search, token: \"[parameter]=[code]: the value "
        "of [code] matches a Coding.code or Identifier.value irrespective of the value of the system "
        "property\" (keyword has only text here; :text is the way to search it)."),
    ("ResearchStudy", "title=breast"): _STARTS,
    ("Location", "name=general"): _STARTS,
    ("ResearchStudy", "title:exact=palbociclib%20collaborative%20adjuvant%20study"): _EXACT,
    ("EvidenceVariable", "title:exact=Overall%20survival%20(OS)"): _EXACT,
    ("ResearchStudy", "date=2015"): _DATE_EQ,
    ("ResearchStudy", "date=eq2015-08"): _DATE_EQ,
    ("ResearchStudy", "date=ne2015"): _DATE_EQ,
    ("ResearchStudy", "date=2014-08-05"): _DATE_EQ,
    ("ResearchStudy", "date=lt2005,gt2025"): (
        "peer answers 400 'Invalid format for date search parameter: 2005,gt2025'. R5 search: \"If, "
        "instead, the search is to find any resource with one of several values, use a comma\"; each "
        "value of the list takes its own prefix."),
    **{("ResearchStudy", q): _NUMBER for q in (
        "recruitment-target=50", "recruitment-target=eq611", "recruitment-target=ne50", "recruitment-target=lt100",
        "recruitment-target=gt500", "recruitment-target=le96", "recruitment-target=ge448", "recruitment-target=sa162",
        "recruitment-target=eb46", "recruitment-target=ap100", "recruitment-target=1e2", "recruitment-target=50.0",
        "recruitment-target=10,50", "recruitment-actual=gt200", "recruitment-actual=le31",
        "recruitment-actual=ap5800")},
    ("ResearchStudy", "site=nct00598403-site-1"): _REF_ID,
    ("ResearchStudy", "site:Location=nct00598403-site-1"): _REF_ID,
    ("ResearchStudy", "protocol=nct02513394-protocol"): _REF_ID,
    ("Provenance", "target:ResearchStudy=nct02513394"): _REF_ID,
    ("ResearchStudy", "progress-status-state-actual=recruiting$true"): _COMPOSITE,
    ("ResearchStudy", "progress-status-state-period=overall-study$ge2020"): _COMPOSITE,
    ("ResearchStudy", "_sort=phase,-_id"): _SORT_KEYS,
    ("ResearchStudy", "_sort=-date,_id"): _SORT_KEYS,
    ("ResearchStudy", "date=gt2000&_sort=-date,_id"): _SORT_KEYS,
    ("ResearchStudy", "_sort=-recruitment-target,_id"): _SORT_KEYS,
    ("Location", "address-country=United%20States&_sort=name"): _SORT_STRING,
    ("ResearchStudy", "recruitment-target:missing=false&_sort=-recruitment-target"): (
        "peer orders numbers as text (96 before 13011 when descending). R5 sort-direction 'descending': "
        "\"Sort by the value descending, so that lower values appear last.\""),
}

ORDERED = ("_sort=",)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bundles() -> list[dict]:
    from fhirstudy.pipeline import convert

    inputs = [ROOT / "seeds"] + ([SAMPLES] if SAMPLES.is_dir() else [])
    return [c.bundle for c in convert(inputs, unmapped=False) if c.ok]


def _local_search_parameters() -> list[dict]:
    from fhirstudy.search.registry import DEFINITION_FILES, read_definitions

    local = read_definitions(DEFINITION_FILES[1:])
    return [d for d in local if d["type"] != "composite"]


@pytest.fixture(scope="module")
def peer():
    """The peer FHIR server (R5) on a free port, loaded with every converted bundle."""
    start, stop = PEER_DIR / "start-peer.sh", PEER_DIR / "stop-peer.sh"
    if not start.exists():
        pytest.skip(f"peer FHIR server not found at {PEER_DIR} (set FHIRSTUDY_PEER_DIR)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed to run the peer FHIR server")
    port = _free_port()
    try:
        started = subprocess.run([str(start), str(port), "--fhir", "r5"], capture_output=True, text=True,
                                 timeout=PEER_START_TIMEOUT)
        if started.returncode != 0:
            pytest.skip(f"the peer FHIR server did not start: {started.stderr[-2000:]}")
        url = f"http://127.0.0.1:{port}"
        with requests.Session() as session:
            # fhirstudy's own parameters, as a hospital store would load them (the peer activates a
            # SearchParameter at once; it has no composite search, see EXPECTED_DIFFERENCES)
            for definition in _local_search_parameters():
                response = session.put(f"{url}/SearchParameter/{definition['id']}", json=definition,
                                       headers={"Content-Type": "application/fhir+json"}, timeout=60)
                assert response.status_code in (200, 201), response.text[:2000]
            for bundle in _bundles():
                response = session.post(url, json=bundle, headers={"Content-Type": "application/fhir+json"},
                                        timeout=120)
                assert response.status_code == 200, response.text[:2000]
        yield url
    finally:
        subprocess.run([str(stop), str(port)], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """A fhirstudy app (SQLite file) loaded with the same bundles through ``POST /``."""
    from _server_fixtures import WRITE_TOKEN
    from fhirstudy.server import close_store, create_app

    db = tmp_path_factory.mktemp("differential") / "fhir.db"
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{db}", "WRITE_TOKEN": WRITE_TOKEN,
                      "BASE_URL": "http://fhirstudy.test"})
    client = app.test_client()
    for bundle in _bundles():
        response = client.post("/", json=bundle, headers=FHIR_HEADERS)
        assert response.status_code == 200, response.get_json()
    yield client
    close_store(app)


def _peer_ids(url: str, rtype: str, query: str) -> tuple[list[str], int]:
    ids, status, next_url = [], 0, f"{url}/{rtype}?{query}&_count={PAGE}"
    with requests.Session() as session:
        while next_url:
            response = session.get(next_url, headers={"Accept": "application/fhir+json"}, timeout=60)
            status = response.status_code
            if status != 200:
                return [], status
            bundle = response.json()
            ids += _entry_keys(bundle)
            next_url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
    return ids, status


def _our_ids(client, rtype: str, query: str) -> tuple[list[str], int]:
    ids, next_url = [], f"/{rtype}?{query}&_count={PAGE}"
    while next_url:
        response = client.get(next_url)
        if response.status_code != 200:
            return [], response.status_code
        bundle = response.get_json()
        ids += _entry_keys(bundle)
        next_url = next((link["url"].replace("http://fhirstudy.test", "") for link in bundle["link"]
                         if link["relation"] == "next"), None)
    return ids, 200


def _entry_keys(bundle: dict) -> list[str]:
    return [f'{e["search"].get("mode", "match")}:{e["resource"]["resourceType"]}/{e["resource"]["id"]}'
            for e in bundle.get("entry", [])]


def _compare(peer, ours, rtype: str, query: str):
    query = query.replace("$", quote("$"))
    theirs, their_status = _peer_ids(peer, rtype, query)
    mine, my_status = _our_ids(ours, rtype, query)
    if not any(query.startswith(prefix) or f"&{prefix}" in query for prefix in ORDERED):
        theirs, mine = sorted(theirs), sorted(mine)
    return (their_status, theirs), (my_status, mine)


def test_enough_searches_cover_every_type():
    from fhirstudy.search import load_registry

    assert len(SEARCHES) >= 100
    registry = load_registry()
    types = {registry.get(rtype, part.split("=")[0].split(":")[0]).type
             for rtype, query in SEARCHES for part in query.split("&") if not part.startswith("_")
             or part.startswith(("_id", "_lastUpdated"))}
    assert types >= {"token", "string", "date", "number", "reference", "composite"}


@pytest.mark.parametrize("rtype,query", SEARCHES)
def test_same_results_as_the_peer(peer, ours, rtype, query):
    (their_status, theirs), (my_status, mine) = _compare(peer, ours, rtype, query)
    assert my_status == 200
    if (rtype, query) in EXPECTED_DIFFERENCES:
        assert (their_status, theirs) != (my_status, mine), "listed as a difference, but the answers agree now"
        return
    assert their_status == 200, f"the peer answered {their_status}"
    assert mine == theirs
