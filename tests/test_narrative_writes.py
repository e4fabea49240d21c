"""FHIR's narrative rules (txt-1, txt-2, no script) on every write the server accepts: create,
update, transaction and batch entries over real HTTP, and ``load`` of FHIR input; a rich narrative
a client may send stays accepted, and every narrative fhirstudy generates passes (by the cheap check)."""
from __future__ import annotations

import json

import orjson
import pytest
import requests

from _server_fixtures import FHIR_HEADERS, WRITE_TOKEN, serve_in_thread
from conftest import SAMPLES, SEEDS
from fhirstudy.cli import EXIT_FAILED, main
from fhirstudy.errors import ValidationFailed
from fhirstudy.pipeline import convert
from fhirstudy.store import open_store
from fhirstudy.validation import validate_resource
from fhirstudy.validation.narrative import div_problems, is_own_shape

XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'
FIELD = "ResearchStudy.text.div"

REFUSED = [
    # (case, div, words in the diagnostics)
    ("not well-formed", f"<div {XHTML}><p>open</div>", "not well-formed"),
    ("an unknown entity", f"<div {XHTML}>a&nbsp;b</div>", "undefined entity"),
    ("not XHTML", "<div><p>x</p></div>", "not a <div> in the XHTML namespace"),
    ("not a div", f"<span {XHTML}>x</span>", "one XHTML <div>"),
    ("a DOCTYPE first", f'<!DOCTYPE d [<!ENTITY e "x">]><div {XHTML}>&e;</div>', "one XHTML <div>"),
    ("script", f"<div {XHTML}><p>x</p><script>alert(1)</script></div>", "<script> is not allowed"),
    ("iframe", f'<div {XHTML}>x<iframe src="https://example.org/"/></div>', "<iframe> is not allowed"),
    ("form", f'<div {XHTML}>x<form action="https://example.org/"><p>y</p></form></div>', "<form> is not allowed"),
    ("object", f'<div {XHTML}>x<object data="x.swf"/></div>', "<object> is not allowed"),
    ("embed", f'<div {XHTML}>x<embed src="x.swf"/></div>', "<embed> is not allowed"),
    ("svg", f'<div {XHTML}>x<svg xmlns="http://www.w3.org/2000/svg"/></div>', "not an XHTML element"),
    ("an event attribute", f'<div {XHTML}><p onclick="steal()">x</p></div>', "event attribute onclick"),
    ("an event attribute on the root", f'<div {XHTML} onmouseover="steal()">x</div>', "event attribute onmouseover"),
    ("a javascript: href", f'<div {XHTML}><a href="javascript:alert(1)">x</a></div>', "javascript: URL"),
    ("a hidden javascript: href", f'<div {XHTML}><a href=" &#106;ava&#9;Script:alert(1)">x</a></div>',
     "javascript: URL"),
    ("a javascript: img src", f'<div {XHTML}><img src="javascript:alert(1)" alt="x"/>x</div>', "javascript: URL"),
    ("a data: href", f'<div {XHTML}><a href="data:text/html,x">x</a></div>', "data: URL"),
    ("script in style", f'<div {XHTML}><p style="width: expression(alert(1))">x</p></div>', "expression("),
    ("an attribute txt-1 lacks", f'<div {XHTML}><p data-x="1">x</p></div>', "attribute data-x"),
    ("a processing instruction", f'<div {XHTML}>x<?xml-stylesheet href="s.css"?></div>', "processing instruction"),
    ("no text", f"<div {XHTML}> <p>  </p><br/></div>", "txt-2"),
    ("empty", f"<div {XHTML}/>", "txt-2"),
]
RICH = (f'<div {XHTML} xml:lang="en" lang="en"><h1>Summary</h1><table class="grid" border="1"><thead><tr>'
        '<th scope="col">Arm</th><th>n</th></tr></thead><tbody><tr><td><a href="https://clinicaltrials.gov/study/'
        'NCT06731140">Letrozole</a></td><td colspan="1">12</td></tr></tbody></table>'
        '<p><img src="data:image/png;base64,iVBORw0KGgo=" alt="logo" width="10"/> '
        '<span style="color: #036; font-weight: bold">in red</span> &amp; <a name="end">end</a></p>'
        '<ul><li><i>one</i></li></ul><!-- a comment --></div>')


def _study(rid: str, div: str) -> dict:
    return {"resourceType": "ResearchStudy", "id": rid, "status": "active", "title": "A study",
            "text": {"status": "additional", "div": div}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """fhirstudy's server with writes, over real HTTP."""
    from fhirstudy.server import close_store, create_app

    db = tmp_path_factory.mktemp("narrative-writes") / "w.db"
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{db}", "WRITE_TOKEN": WRITE_TOKEN})
    with serve_in_thread(app) as url:
        yield url
    close_store(app)


def _refused(response: requests.Response, field: str, words: str) -> None:
    assert response.status_code in (400, 422), response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(field in issue.get("expression", []) and words in issue["diagnostics"]
               for issue in outcome["issue"]), outcome


@pytest.mark.parametrize("case, div, words", REFUSED, ids=[c[0] for c in REFUSED])
def test_a_narrative_that_breaks_the_rules_is_refused_on_create_and_update(server, case, div, words):
    created = requests.post(f"{server}/ResearchStudy", data=orjson.dumps(_study("ignored", div)),
                            headers=FHIR_HEADERS, timeout=30)
    _refused(created, FIELD, words)
    updated = requests.put(f"{server}/ResearchStudy/narr-1", data=orjson.dumps(_study("narr-1", div)),
                           headers=FHIR_HEADERS, timeout=30)
    _refused(updated, FIELD, words)
    assert requests.get(f"{server}/ResearchStudy/narr-1", timeout=30).status_code == 404


IN_BUNDLES = [REFUSED[0], REFUSED[5], REFUSED[13], REFUSED[-2]]


@pytest.mark.parametrize("case, div, words", IN_BUNDLES, ids=[c[0] for c in IN_BUNDLES])
def test_a_transaction_or_batch_entry_with_such_a_narrative_is_refused(server, case, div, words):
    ok_id = "ok-" + "".join(c if c.isalnum() else "-" for c in case)  # the server lives for the module
    entries = [{"resource": _study(ok_id, f"<div {XHTML}><p>fine</p></div>"),
                "request": {"method": "PUT", "url": f"ResearchStudy/{ok_id}"}},
               {"resource": _study("narr-bad", div), "request": {"method": "PUT", "url": "ResearchStudy/narr-bad"}}]
    transaction = requests.post(server, headers=FHIR_HEADERS, timeout=30, data=orjson.dumps(
        {"resourceType": "Bundle", "type": "transaction", "entry": entries}))
    _refused(transaction, "Bundle.entry[1].resource.text.div", words)
    assert requests.get(f"{server}/ResearchStudy/{ok_id}", timeout=30).status_code == 404  # all or nothing
    batch = requests.post(server, headers=FHIR_HEADERS, timeout=30, data=orjson.dumps(
        {"resourceType": "Bundle", "type": "batch", "entry": entries}))
    assert batch.status_code == 200, batch.text
    ok, bad = (e["response"] for e in batch.json()["entry"])
    assert ok["status"].startswith("201") and bad["status"][:3] in ("400", "422")
    assert any(words in i["diagnostics"] and i.get("expression") == [FIELD] for i in bad["outcome"]["issue"]), bad


def test_a_rich_narrative_stays_accepted_and_is_kept(server):
    response = requests.put(f"{server}/ResearchStudy/narr-rich", data=orjson.dumps(_study("narr-rich", RICH)),
                            headers=FHIR_HEADERS, timeout=30)
    assert response.status_code == 201, response.text
    assert requests.get(f"{server}/ResearchStudy/narr-rich", timeout=30).json()["text"]["div"] == RICH
    valid = requests.post(f"{server}/ResearchStudy/$validate", data=orjson.dumps(_study("v", REFUSED[5][1])),
                          headers=FHIR_HEADERS, timeout=30).json()
    assert any(i.get("expression") == [FIELD] for i in valid["issue"]), valid  # $validate says it too


@pytest.mark.parametrize("resource, field", [
    ({"resourceType": "ResearchStudy", "id": "c", "status": "active", "contained": [
        {"resourceType": "Organization", "id": "o", "name": "x",
         "text": {"status": "generated", "div": f"<div {XHTML}><script>x</script>y</div>"}}]},
     "ResearchStudy.contained[0].text.div"),
    ({"resourceType": "Composition", "id": "c", "status": "final", "type": {"text": "report"}, "date": "2024-01-01",
      "title": "r", "author": [{"display": "a"}], "section": [{"title": "s", "section": [
          {"title": "t", "text": {"status": "generated", "div": f'<div {XHTML}><a href="javascript:x()">y</a></div>'}}]}]},
     "Composition.section[0].section[0].text.div"),
])
def test_every_narrative_of_a_resource_is_checked(resource, field):
    with pytest.raises(ValidationFailed) as caught:
        validate_resource(resource)
    assert [i.field for i in caught.value.issues] == [field]


def _divs(node, found: list[str]) -> list[str]:
    if isinstance(node, dict):
        if isinstance(node.get("div"), str):
            found.append(node["div"])
        for value in node.values():
            _divs(value, found)
    elif isinstance(node, list):
        for value in node:
            _divs(value, found)
    return found


def test_every_generated_narrative_passes_and_takes_the_cheap_path():
    samples = sorted(p for p in SAMPLES.glob("*") if p.suffix in (".json", ".xml", ".csv")) if SAMPLES.is_dir() else []
    resources = [e["resource"] for c in convert([SEEDS, *samples], unmapped=False) if c.ok for e in c.bundle["entry"]]
    divs = _divs(resources, [])
    assert len(divs) >= len(resources) > 30  # a Composition's sections have theirs too
    assert [d for d in divs if not is_own_shape(d)] == []
    assert [d for d in divs if div_problems(d)] == []
    for resource in resources:
        validate_resource(resource)


def test_load_of_fhir_input_refuses_such_a_narrative_and_stores_the_rest(tmp_path, capsys):
    path = tmp_path / "studies.ndjson"
    path.write_text("\n".join(json.dumps(_study(rid, div)) for rid, div in [
        ("good", RICH), ("bad", REFUSED[5][1]), ("own", f"<div {XHTML}><p><b>Title</b></p></div>")]) + "\n")
    db = f"sqlite:///{tmp_path / 'load.db'}"
    assert main(["load", str(path), "--db", db]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{path}:2 [{FIELD}]: <script> is not allowed" in err and "Traceback" not in err
    store = open_store(db)
    try:
        assert store.read("ResearchStudy", "good") and store.read("ResearchStudy", "own")
        assert store.read("ResearchStudy", "bad") is None
    finally:
        store.close()


def test_validate_of_a_bundle_checks_every_narrative_in_it(tmp_path, capsys):
    """``fhirstudy validate`` of a Bundle (a file from anywhere) checks its entries' narratives as a
    write would; a Bundle fhirstudy converted passes as it is."""
    converted = next(c for c in convert([SEEDS], unmapped=False) if c.ok).bundle
    good = tmp_path / "good.json"
    good.write_bytes(orjson.dumps(converted))
    assert main(["validate", str(good)]) == 0
    broken = json.loads(good.read_text())
    broken["entry"][1]["resource"]["text"]["div"] = REFUSED[5][1]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    capsys.readouterr()
    assert main(["validate", str(good), str(bad)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "<script> is not allowed" in err and str(bad) in err and "Traceback" not in err
    assert "valid 1, invalid 1" in err
