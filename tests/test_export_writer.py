"""One Bulk Data export written from one snapshot of the store (fhirstudy.export.writer), on
SQLite and PostgreSQL: every exported line is the stored resource, the set is what the level and
filters say (references followed to the end), and writes during an export do not show in it."""
from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest

from _server_fixtures import db_url, pg_server, pg_url  # noqa: F401
from conftest import SAMPLES, SEEDS
from fhirstudy.export.request import ExportRequest
from fhirstudy.export.writer import Cancelled, references, write_export
from fhirstudy.pipeline import convert
from fhirstudy.service import SearchService
from fhirstudy.store import open_store

BREAST = "condition=breast-cancer"


@pytest.fixture(scope="module")
def resources() -> list[dict]:
    return [e["resource"] for c in convert([SEEDS, SAMPLES]) if c.ok for e in c.bundle["entry"]]


@pytest.fixture
def store(db_url, resources):
    store = open_store(db_url)
    store.put_many(copy.deepcopy(resources))
    yield store
    store.close()


def _export(store, request: ExportRequest, directory: Path, **options):
    directory.mkdir(parents=True, exist_ok=True)
    result = write_export(store, SearchService(store, store.registry, 0), request, directory, **options)
    lines: dict[tuple[str, str], bytes] = {}
    for listed in result.output:
        for line in (directory / listed.name).read_bytes().splitlines():
            resource = orjson.loads(line)
            assert resource["resourceType"] == listed.type, listed.name
            assert (listed.type, resource["id"]) not in lines, f"{listed.type}/{resource['id']} exported twice"
            lines[(listed.type, resource["id"])] = line
        assert listed.count == len((directory / listed.name).read_bytes().splitlines())
    return result, lines


def _all_stored(store, types) -> dict[tuple[str, str], bytes]:
    out = {}
    for rtype in types:
        query = SearchService(store, store.registry, 0).parse(rtype, [("_count", "200")])
        while True:
            result = store.search(query)
            out.update(((rtype, entry.id), entry.json) for entry in result.entries)
            if result.next_cursor is None:
                break
            query.cursor = result.next_cursor
    return out


def test_a_system_export_is_every_stored_resource_byte_for_byte(store, tmp_path):
    result, lines = _export(store, ExportRequest(), tmp_path / "all")
    stored = _all_stored(store, {t for t, _ in lines} | {"ResearchStudy", "Location", "Provenance"})
    assert lines == stored
    assert result.transaction_time >= max(orjson.loads(b)["meta"]["lastUpdated"] for b in stored.values())
    assert result.error == [] and result.deleted == []


def test_a_study_export_holds_every_resource_its_studies_reference_and_their_provenance(store, tmp_path):
    result, lines = _export(store, ExportRequest(level="ResearchStudy", type_filters={"ResearchStudy": (BREAST,)}),
                            tmp_path / "breast")
    service = SearchService(store, store.registry, 0)
    breast = {e.id for e in store.search(service.parse("ResearchStudy", [("condition", "breast-cancer")])).entries}
    assert breast and {i for t, i in lines if t == "ResearchStudy"} == breast
    everything = _all_stored(store, ["ResearchStudy", "Location", "PlanDefinition", "EvidenceVariable", "Provenance"])
    for key, line in lines.items():   # nothing a study's set references is missing from the export
        for target in references(line):
            if target in everything:
                assert target in lines, f"{key} references {target}, which is not exported"
    provenance = [orjson.loads(line) for (t, _), line in lines.items() if t == "Provenance"]
    assert {ref.partition("/")[2] for p in provenance for ref in (x["reference"] for x in p["target"])
            if ref.startswith("ResearchStudy/")} == breast
    assert {t for t, _ in lines} >= {"ResearchStudy", "Location", "PlanDefinition", "EvidenceVariable", "Provenance"}
    assert len(lines) < len(everything)   # the other studies' sites and criteria stay out


def test_type_filters_are_or_and_the_types_asked_are_the_only_ones(store, tmp_path):
    request = ExportRequest(types=("ResearchStudy",), type_filters={"ResearchStudy": (BREAST, "phase=phase-3")})
    _, lines = _export(store, request, tmp_path / "or")
    service = SearchService(store, store.registry, 0)
    expected = set()
    for params in ([("condition", "breast-cancer")], [("phase", "phase-3")]):
        expected |= {e.id for e in store.search(service.parse("ResearchStudy", params + [("_count", "500")])).entries}
    assert {t for t, _ in lines} == {"ResearchStudy"}
    assert {i for _, i in lines} == expected


def test_since_keeps_what_changed_and_lists_what_was_deleted(store, tmp_path):
    first, _ = _export(store, ExportRequest(), tmp_path / "first")
    study = orjson.loads(store.read("ResearchStudy", "nct00763412"))
    study["title"] = study["title"] + " (amended)"
    store.update(study)
    store.delete("Location", next(i for t, i in references(orjson.dumps(study)) if t == "Location"))
    result, lines = _export(store, ExportRequest(since=first.transaction_time), tmp_path / "since")
    assert list(lines) == [("ResearchStudy", "nct00763412")]
    assert orjson.loads(lines[("ResearchStudy", "nct00763412")])["title"].endswith("(amended)")
    [deleted] = result.deleted
    bundle = orjson.loads((tmp_path / "since" / deleted.name).read_bytes())
    assert deleted.type == "Bundle" and bundle["type"] == "transaction"
    assert bundle["entry"][0]["request"]["method"] == "DELETE"
    assert bundle["entry"][0]["request"]["url"].startswith("Location/")


def test_writes_during_an_export_do_not_show_in_it(store, tmp_path):
    before = _all_stored(store, ["ResearchStudy"])
    changed = orjson.loads(store.read("ResearchStudy", "nct00763412"))
    changed["title"] = "written while the export ran"
    new = {**copy.deepcopy(changed), "id": "nct99999999"}
    wrote = []

    def write_meanwhile(done, total):
        if not wrote:
            wrote.append(store.update(changed))
            store.create(new)

    # Locations are read first, studies after: the writes land between the two
    result, lines = _export(store, ExportRequest(types=("Location", "ResearchStudy")), tmp_path / "during",
                            progress=write_meanwhile)
    assert wrote
    assert {k: v for k, v in lines.items() if k[0] == "ResearchStudy"} == before
    assert wrote[0].last_updated >= result.transaction_time
    _, after = _export(store, ExportRequest(types=("ResearchStudy",)), tmp_path / "after")
    assert ("ResearchStudy", "nct99999999") in after


def test_files_are_split_at_the_size_asked(store, tmp_path):
    result, lines = _export(store, ExportRequest(types=("Location",)), tmp_path / "split", max_file_bytes=20_000)
    assert len(result.output) > 3
    for listed in result.output:
        data = (tmp_path / "split" / listed.name).read_bytes()
        assert len(data) <= 20_000 or listed.count == 1
    assert sum(f.count for f in result.output) == len(lines) == len(_all_stored(store, ["Location"]))
    assert [f.name for f in result.output][:2] == ["Location-1.ndjson", "Location-2.ndjson"]


def test_elements_cut_resources_down_and_tag_them(store, tmp_path):
    _, lines = _export(store, ExportRequest(types=("ResearchStudy", "Location"), elements=("ResearchStudy.title",)),
                       tmp_path / "elements")
    study = orjson.loads(lines[("ResearchStudy", "nct00763412")])
    assert "title" in study and "status" in study and "condition" not in study   # status is mandatory
    assert any(t.get("code") == "SUBSETTED" for t in study["meta"].get("tag", []))
    location = next(orjson.loads(v) for (t, _), v in lines.items() if t == "Location")
    assert "SUBSETTED" not in str(location.get("meta"))


def test_a_group_export_starts_from_the_studies_the_group_lists(store, tmp_path):
    store.update({"resourceType": "Group", "id": "our-trials", "type": "device", "membership": "enumerated",
                  "member": [{"entity": {"reference": "ResearchStudy/nct00763412"}}]})
    _, lines = _export(store, ExportRequest(level="Group", group_id="our-trials"), tmp_path / "group")
    assert {i for t, i in lines if t == "ResearchStudy"} == {"nct00763412"}
    assert any(t == "Location" for t, _ in lines)


def test_lenient_warnings_go_to_the_error_file(store, tmp_path):
    result, _ = _export(store, ExportRequest(types=("PlanDefinition",), warnings=("patient: not supported",)),
                        tmp_path / "warn")
    [error] = result.error
    outcome = orjson.loads((tmp_path / "warn" / error.name).read_bytes())
    assert outcome["resourceType"] == "OperationOutcome" and "patient" in outcome["issue"][0]["diagnostics"]


def test_references_are_read_from_the_stored_bytes_and_text_cannot_pass_for_one():
    stored = orjson.dumps({"resourceType": "ResearchStudy", "id": "s", "site": [{"reference": "Location/a-1.b"}],
                           "protocol": [{"reference": "PlanDefinition/p/_history/2"}],
                           "description": 'see "reference":"Location/fake"', "note": [{"text": "Location/x"}],
                           "relatedArtifact": [{"resourceReference": {"reference": "https://other.org/Group/g"}}],
                           "extension": [{"url": "u", "valueReference": {"reference": "Group/g1"}}]})
    assert references(stored) == {("Location", "a-1.b"), ("PlanDefinition", "p"), ("Group", "g1")}


def test_a_cancelled_export_stops(store, tmp_path):
    with pytest.raises(Cancelled):
        _export(store, ExportRequest(), tmp_path / "cancel", cancelled=lambda: True)
