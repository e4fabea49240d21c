"""Search parameters as data: registry, FHIRPath subset, index rows and request parsing."""
from __future__ import annotations


import pytest

from _server_fixtures import CONDITION_SYSTEM, MESH, sample_resources
from fhirstudy.errors import InvalidRequest
from fhirstudy.search import index_rows, load_registry, parse_search
from fhirstudy.search.fhirpath import UnsupportedExpression, compile_expression, split_union
from fhirstudy.search.index import date_range, normalize
from fhirstudy.search.query import MAX_COUNT, RangeValue, TokenValue
from fhirstudy.search.registry import DEFINITION_FILES, SERVED_TYPES, read_definitions

OFFICIAL = read_definitions(DEFINITION_FILES[:1])


def _official(rtype: str) -> dict[str, dict]:
    return {p["code"]: p for p in OFFICIAL if rtype in p["base"]}


def _by_id(rtype: str, rid: str) -> dict:
    return next(r for r in sample_resources() if r["resourceType"] == rtype and r["id"] == rid)


# --- registry ------------------------------------------------------------------------------------

# What we serve of the official parameters, per type: the list is the documentation of the slice.
EXPECTED_UNSUPPORTED = {
    "ResearchStudy": set(),  # the three progress-status-state-* composites are defined locally
    "PlanDefinition": {"context-quantity", "context-type-quantity"},
    "EvidenceVariable": {"context-quantity", "context-type-quantity", "topic"},
}


@pytest.mark.parametrize("rtype", sorted(EXPECTED_UNSUPPORTED))
def test_supported_official_parameters(rtype):
    registry = load_registry()
    official = set(_official(rtype))
    served = set(registry.params(rtype))
    assert official - served == EXPECTED_UNSUPPORTED[rtype]
    assert set(registry.unsupported(rtype)) == EXPECTED_UNSUPPORTED[rtype]


def test_all_22_non_composite_research_study_parameters_are_served():
    non_composite = {code for code, p in _official("ResearchStudy").items() if p["type"] != "composite"}
    assert len(non_composite) == 22
    assert non_composite <= set(load_registry().params("ResearchStudy"))


def test_common_and_local_parameters():
    registry = load_registry()
    for rtype in SERVED_TYPES:
        assert registry.get(rtype, "_id").type == "token"
        assert registry.get(rtype, "_lastUpdated").type == "date"
        assert registry.get(rtype, "_in") is None  # defined on Resource, not served
    local = registry.get("ResearchStudy", "recruitment-status")
    assert local.url == "https://fhirstudy.org/fhir/SearchParameter/ResearchStudy-recruitment-status"
    assert local.type == "token"
    assert registry.get("Organization", "phonetic") is None
    condition = registry.get("ResearchStudy", "condition")
    assert condition.below == ("condition-ancestor",) and "below" in condition.modifiers
    assert registry.get("ResearchStudy", "condition-ancestor").type == "token"
    assert registry.get("ResearchStudy", "phase").below == ()


def test_shared_expression_keeps_only_the_branches_of_the_type():
    assert load_registry().get("PlanDefinition", "title").expression.text == "PlanDefinition.title"


# --- FHIRPath subset -----------------------------------------------------------------------------

GROUP = {
    "resourceType": "Group", "id": "g",
    "characteristic": [{"code": {"text": "age"}, "valueCodeableConcept": {"text": "adult"}},
                       {"code": {"text": "smoker"}, "valueBoolean": True},
                       {"code": {"text": "weight"}, "valueQuantity": {"value": 80}},
                       {"code": {"text": "ref"}, "valueReference": {"reference": "Location/l"}}],
}
PLAN = {
    "resourceType": "PlanDefinition", "id": "p",
    "relatedArtifact": [{"type": "composed-of", "resource": "https://x/Library/a"},
                        {"type": "depends-on", "resource": "https://x/Library/b"}],
    "action": [{"definitionCanonical": "https://x/ActivityDefinition/1"},
               {"definitionUri": "https://x/other"}],
}
FHIRPATH_CASES = [
    ("ResearchStudy.title", _by_id("ResearchStudy", "rs-1"), ["HER2 Negative Breast Cancer Study of Drug A"]),
    ("Resource.id", _by_id("ResearchStudy", "rs-2"), ["rs-2"]),
    ("ResearchStudy.recruitment.targetNumber", _by_id("ResearchStudy", "rs-2"), [300]),
    ("ResearchStudy.site.where(resolve() is Location)", _by_id("ResearchStudy", "rs-2"),
     [{"reference": "Location/loc-2"}]),
    ("Location.name | Location.alias", _by_id("Location", "loc-2"), ["Mayo Clinic", "Mayo Rochester"]),
    ("(Group.characteristic.value.ofType(CodeableConcept)) | (Group.characteristic.value.ofType(boolean))",
     GROUP, [{"text": "adult"}, True]),
    ("Group.characteristic.value as Reference", GROUP, [{"reference": "Location/l"}]),
    ("PlanDefinition.relatedArtifact.where(type='composed-of').resource", PLAN, ["https://x/Library/a"]),
    ("PlanDefinition.action.definition.ofType(canonical)", PLAN, ["https://x/ActivityDefinition/1"]),
    ("PlanDefinition.action.definition.ofType(uri)", PLAN, ["https://x/other"]),
    ("ResearchStudy.nothing.here", _by_id("ResearchStudy", "rs-1"), []),
    # a top-level choice element is found under its typed name (the resource has no "occurred")
    ("Provenance.occurred.ofType(dateTime)", {"resourceType": "Provenance", "occurredDateTime": "2024-01-02"},
     ["2024-01-02"]),
    ("Practitioner.deceased.ofType(dateTime)", {"resourceType": "Practitioner", "deceasedBoolean": True}, []),
    ("Resource.meta.source", {"resourceType": "Location", "meta": {"source": "urn:x"}}, ["urn:x"]),
]


def test_expressions_skip_resources_without_their_top_elements():
    """An expression is not walked on a resource that has none of the elements it starts from;
    one that may start at a choice element (occurred[x]) is walked whenever a key starts so."""
    expression = compile_expression("Location.address.city | Location.name")
    assert expression._roots == ("address", "name")
    assert expression.evaluate({"resourceType": "Location", "alias": ["x"]}) == []
    assert compile_expression("Provenance.occurred.ofType(dateTime)")._roots == ("occurred", "[x]")
    assert compile_expression("Resource.meta.tag")._roots == ("meta",)
    assert compile_expression("(ResearchStudy.title)")._roots == ("title",)


@pytest.mark.parametrize("expression,resource,expected", FHIRPATH_CASES)
def test_fhirpath(expression, resource, expected):
    assert [item.value for item in compile_expression(expression).evaluate(resource)] == expected


def test_fhirpath_knows_types():
    items = compile_expression("ResearchStudy.period | ResearchStudy.condition").evaluate(_by_id("ResearchStudy", "rs-1"))
    assert [item.type for item in items] == ["Period", "CodeableConcept"]


@pytest.mark.parametrize("expression", [
    "Practitioner.deceased.exists() and Practitioner.deceased != false",
    "Location.extension('http://x').value",
    "ResearchStudy.title.substring(1)",
])
def test_fhirpath_outside_the_subset_is_refused(expression):
    with pytest.raises(UnsupportedExpression):
        compile_expression(expression)


def test_split_union_respects_parentheses_and_quotes():
    assert split_union("(A.b.ofType(X)) | A.c.where(d = 'x|y')") == ["A.b.ofType(X)", "A.c.where(d = 'x|y')"]


# --- index rows ----------------------------------------------------------------------------------

DATE_RANGES = [
    ("2024", ("2024-01-01T00:00:00.000", "2024-12-31T23:59:59.999")),
    ("2024-02", ("2024-02-01T00:00:00.000", "2024-02-29T23:59:59.999")),
    ("2024-03-05", ("2024-03-05T00:00:00.000", "2024-03-05T23:59:59.999")),
    ("2024-03-05T10:00:00+02:00", ("2024-03-05T08:00:00.000", "2024-03-05T08:00:00.999")),
    ("2024-03-05T10:00:00.25Z", ("2024-03-05T10:00:00.250", "2024-03-05T10:00:00.250")),
]


@pytest.mark.parametrize("text,expected", DATE_RANGES)
def test_date_range_covers_the_precision(text, expected):
    assert date_range(text) == expected


def test_normalize_removes_case_and_accents():
    assert normalize("Hôpital SAINT-Louis Étude") == "hopital saint-louis etude"


def _rows(rtype: str, rid: str, code: str) -> list[dict]:
    param = load_registry().get(rtype, code)
    rows = index_rows(_by_id(rtype, rid), [param])[param.type]
    return [{k: v for k, v in row.items() if k != "param"} for row in rows]


def test_token_rows_from_codeable_concept():
    assert _rows("ResearchStudy", "rs-1", "condition") == [
        {"system": CONDITION_SYSTEM, "code": "breast-cancer", "text": None},
        {"system": MESH, "code": "D001943", "text": "breast neoplasms"},
        {"system": None, "code": None, "text": "her2 negative breast cancer"},
    ]


def test_token_rows_from_identifier_and_code():
    assert _rows("ResearchStudy", "rs-1", "identifier") == [
        {"system": "https://clinicaltrials.gov", "code": "NCT06731140", "text": None}]
    assert _rows("ResearchStudy", "rs-1", "status") == [{"system": None, "code": "active", "text": None}]
    assert _rows("Organization", "org-1", "active") == [{"system": None, "code": "true", "text": None}]


def test_string_rows_keep_the_whole_text_only_when_it_was_cut():
    from fhirstudy.search.index import STRING_INDEX_LENGTH

    study = {**_by_id("ResearchStudy", "rs-1"), "description": "Long " * 100}
    param = load_registry().get("ResearchStudy", "description")
    [row] = index_rows(study, [param])["string"]
    assert len(row["value"]) == STRING_INDEX_LENGTH and row["full"] == "long " * 100
    [short] = _rows("ResearchStudy", "rs-1", "title")
    assert short["full"] is None and short["value"] == "her2 negative breast cancer study of drug a"


def test_string_rows_from_address_parts():
    values = {row["value"] for row in _rows("Location", "loc-1", "address")}
    assert values == {"1 avenue claude vellefaux", "paris", "75010", "fr"}


def test_reference_date_number_rows():
    assert _rows("ResearchStudy", "rs-1", "site") == [
        {"target_type": "Location", "target_id": "loc-1", "url": "Location/loc-1"}]
    assert _rows("ResearchStudy", "rs-1", "date") == [
        {"low": "2024-03-01T00:00:00.000", "high": "2026-12-31T23:59:59.999"}]
    assert _rows("ResearchStudy", "rs-2", "recruitment-actual") == [{"value": 287.0}]


# --- request parsing -----------------------------------------------------------------------------

def _parse(query: str, rtype: str = "ResearchStudy", lenient: bool = False):
    pairs = [tuple(part.split("=", 1)) for part in query.split("&") if part]
    return parse_search(rtype, pairs, load_registry(), lenient)


def test_repeat_is_and_comma_is_or():
    parsed = _parse("condition=a,b&condition=https://s|c")
    assert [c.values for c in parsed.clauses] == [
        (TokenValue(None, "a"), TokenValue(None, "b")), (TokenValue("https://s", "c"),)]


def test_token_forms():
    values = _parse("identifier=|x,s|,s|x").clauses[0].values
    assert values == (TokenValue(None, "x", no_system=True), TokenValue("s", None), TokenValue("s", "x"))


def test_prefixes():
    assert _parse("date=ge2024-01").clauses[0].values == (
        RangeValue("ge", "2024-01-01T00:00:00.000", "2024-01-31T23:59:59.999"),)
    number = _parse("recruitment-target=100").clauses[0].values[0]
    assert (number.prefix, number.low, number.high) == ("eq", 99.5, 100.5)


def test_paging_parameters():
    parsed = _parse("_count=5&_offset=10")
    assert (parsed.count, parsed.offset) == (5, 10)
    assert _parse("_count=100000").count == MAX_COUNT
    assert _parse("_summary=count").count == 0


BAD_REQUESTS = [
    ("unknown=1", "unknown"),
    ("title:fuzzy=x", "title:fuzzy"),
    ("_count=abc", "_count"),
    ("_offset=-1", "_offset"),
    ("date=notadate", "date"),
    ("date=2024-13", "date"),
    ("recruitment-target=many", "recruitment-target"),
    ("status:missing=maybe", "status:missing"),
    ("_sort=unknown", "_sort"),
    ("_summary=short", "_summary"),
    ("_total=some", "_total"),
    ("_include=ResearchStudy:title", "_include"),
    ("_include=PlanDefinition:composed-of", "_include"),
    ("_revinclude=ResearchStudy:nothing", "_revinclude"),
    ("_elements=title.text", "_elements"),
    ("_cursor=!!", "_cursor"),
    ("progress-status-state-actual=recruiting", "progress-status-state-actual"),
    ("progress-status-state-period=recruiting$notadate", "progress-status-state-period"),
    ("site:Location=Organization/x", "site:Location"),
    ("phase:below=phase-1", "phase:below"),  # no parameter indexes broader phases
    ("condition:above=D009369", "condition:above"),
]


@pytest.mark.parametrize("query,expression", BAD_REQUESTS)
def test_bad_requests_name_the_parameter(query, expression):
    with pytest.raises(InvalidRequest) as info:
        _parse(query)
    assert info.value.expression == expression
    assert info.value.status == 400


def test_lenient_ignores_unknown_parameters():
    parsed = _parse("unknown=1&title=x", lenient=True)
    assert parsed.ignored == ["unknown"]
    assert [c.param.code for c in parsed.clauses] == ["title"]
