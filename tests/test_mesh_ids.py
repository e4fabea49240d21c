"""MeSH descriptor ids in NLM's form (``mappings/mesh.json``): the padded ``D000001943`` of some
ClinicalTrials.gov output is NLM's ``D001943``; a real nine-digit id stays as it is. Readers
write NLM's form, and search accepts either."""
from __future__ import annotations

import json

import pytest

from conftest import SAMPLES
from fhirstudy.search import load_registry, parse_search
from fhirstudy.terminology import MESH_SYSTEM, load_mapping, mesh_descriptor_id

MESH_IDS = [
    ("D000001943", "D001943"),  # Breast Neoplasms, padded by the API
    ("D001943", "D001943"),  # already NLM's form
    ("D000009369", "D009369"),  # Neoplasms
    ("D000064418", "D064418"),
    ("D000065626", "D065626"),  # Non-alcoholic Fatty Liver Disease: a six-digit id in NLM's MeSH 2017
    ("D000066331", "D066331"),  # the highest six-digit descriptor id in NLM's MeSH 2017
    ("D000066388", "D000066388"),  # the lowest nine-digit one there: not padded
    ("D000086382", "D000086382"),  # COVID-19: a real nine-digit id, not padded
    ("D000077289", "D000077289"),  # Letrozole: a real nine-digit id
    ("D000000001", "D000001"),
    ("D0001943", "D0001943"),  # not a padded id: kept as written
    ("C000657245", "C000657245"),  # a supplementary concept, not a descriptor
    ("d000001943", "d000001943"),
    ("breast-cancer", "breast-cancer"),
]


@pytest.mark.parametrize("given,expected", MESH_IDS)
def test_mesh_descriptor_id(given, expected):
    assert mesh_descriptor_id(given) == expected


def test_the_rule_is_data_with_its_source():
    rule = load_mapping("mesh.json")["descriptorId"]
    assert rule["description"] and rule["source"] and rule["paddedBelow"] == 66332


@pytest.mark.parametrize("value,system,code", [
    (f"{MESH_SYSTEM}|D000001943", MESH_SYSTEM, "D001943"),
    (f"{MESH_SYSTEM}|D001943", MESH_SYSTEM, "D001943"),
    ("D000001943", None, "D001943"),
    (f"{MESH_SYSTEM}|D000086382", MESH_SYSTEM, "D000086382"),
    ("https://example.org/other|D000001943", "https://example.org/other", "D000001943"),  # not MeSH: as asked
])
def test_search_values_take_nlm_form(value, system, code):
    query = parse_search("ResearchStudy", [("condition", value)], load_registry())
    token = query.clauses[0].values[0]
    assert (token.system, token.code) == (system, code)


@pytest.mark.parametrize("name,value,code", [
    ("condition-ancestor", "D000009369", "D009369"),
    ("condition:below", "D000009369", "D009369"),
    ("identifier", "D000012345", "D000012345"),  # an identifier is not a MeSH id
    ("identifier", f"{MESH_SYSTEM}|D000012345", "D012345"),  # unless its system says so
    ("keyword", "D000001943", "D000001943"),
])
def test_bare_codes_are_mesh_ids_only_where_the_parameter_says(name, value, code):
    query = parse_search("ResearchStudy", [(name, value)], load_registry())
    assert query.clauses[0].values[0].code == code


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the samples folder is missing")
def test_json_reader_writes_nlm_form():
    from fhirstudy.sources import iter_records

    raw = json.loads((SAMPLES / "NCT00763412.json").read_text())
    padded = [m["id"] for m in raw["derivedSection"]["conditionBrowseModule"]["meshes"]]
    assert padded[0] == "D000003550"
    trial = next(iter_records([SAMPLES / "NCT00763412.json"])).trial
    assert [m.id for m in trial.condition_meshes] == [mesh_descriptor_id(i) for i in padded]
    assert trial.condition_meshes[0].id == "D003550"
