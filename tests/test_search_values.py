"""Search values and index values at their edges: calendar limits, integers, cursors, limits,
escapes, control characters, text normalisation and the bounds of string index rows — parsed
directly, and end to end through the Flask app on SQLite and on PostgreSQL."""
from __future__ import annotations

import base64
import unicodedata
from urllib.parse import urlencode

import orjson
import pytest

from _server_fixtures import (FHIR_HEADERS, db_url, fixed_clock, pg_server, pg_url,  # noqa: F401
                              sample_resources, write_app, write_client)
from fhirstudy.errors import InvalidRequest
from fhirstudy.limits import (MAX_HEADER_BYTES, MAX_INCLUDES, MAX_OFFSET, MAX_OR_VALUES, MAX_RESULT_PARAMETERS,
                              MAX_SEARCH_CLAUSES, MAX_SEARCH_VALUES, MAX_SORT_KEYS, MAX_VALUE_LENGTH)
from fhirstudy.search import index_rows, load_registry, parse_search
from fhirstudy.search.fhirpath import UnsupportedExpression, compile_expression
from fhirstudy.search.index import (HIGH_INSTANT, LOW_INSTANT, STRING_INDEX_LENGTH, STRING_KEEP_LENGTH,
                                    TOKEN_LENGTH, BadValue, date_range, normalize, normalized_prefix)
from fhirstudy.search.query import MAX_COUNT, StringValue, TokenValue, encode_cursor
from fhirstudy.server import STORE_EXTENSION, close_store, create_app
from fhirstudy.terminology import fold

BASE = "https://fhir.example.org/r5"


def _cursor(values: list) -> str:
    """A cursor as the server writes them, holding whatever ``values`` are."""
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode("ascii").rstrip("=")


# --- dates at the edges of the calendar -----------------------------------------------------------

# (value, low, high): every precision, with and without time zone, at both ends of the calendar
EDGE_DATES = [
    ("0001", LOW_INSTANT, "0001-12-31T23:59:59.999"),
    ("0001-01", LOW_INSTANT, "0001-01-31T23:59:59.999"),
    ("0001-01-01", LOW_INSTANT, "0001-01-01T23:59:59.999"),
    ("0001-01-01T00:00Z", LOW_INSTANT, "0001-01-01T00:00:59.999"),
    ("0001-01-01T00:00+05:00", LOW_INSTANT, LOW_INSTANT),  # 0000-12-31T19:00Z: before the calendar
    ("0001-01-01T00:00:00+14:00", LOW_INSTANT, LOW_INSTANT),
    ("0001-01-01T00:00:00.000+14:00", LOW_INSTANT, LOW_INSTANT),
    ("0001-01-01T13:59:59.999+14:00", LOW_INSTANT, LOW_INSTANT),
    ("0001-01-01T14:00:30+14:00", "0001-01-01T00:00:30.000", "0001-01-01T00:00:30.999"),
    ("0001-01-01T00:00:00-14:00", "0001-01-01T14:00:00.000", "0001-01-01T14:00:00.999"),
    ("9999", "9999-01-01T00:00:00.000", HIGH_INSTANT),
    ("9999-12", "9999-12-01T00:00:00.000", HIGH_INSTANT),
    ("9999-12-31", "9999-12-31T00:00:00.000", HIGH_INSTANT),
    ("9999-12-31T23:59Z", "9999-12-31T23:59:00.000", HIGH_INSTANT),
    ("9999-12-31T23:59-12:00", HIGH_INSTANT, HIGH_INSTANT),  # 10000-01-01T11:59Z: after the calendar
    ("9999-12-31T23:59:59-12:00", HIGH_INSTANT, HIGH_INSTANT),
    ("9999-12-31T12:00:00-12:00", HIGH_INSTANT, HIGH_INSTANT),
    ("9999-12-31T23:59:59.999-14:00", HIGH_INSTANT, HIGH_INSTANT),
    ("9999-12-31T23:59:59.999Z", HIGH_INSTANT, HIGH_INSTANT),
    ("9999-12-31T23:59:59+14:00", "9999-12-31T09:59:59.000", "9999-12-31T09:59:59.999"),
    ("2024-02", "2024-02-01T00:00:00.000", "2024-02-29T23:59:59.999"),
    ("2024-03-01T10:00:00.5+01:00", "2024-03-01T09:00:00.500", "2024-03-01T09:00:00.500"),
    ("2024-03-01T10:00:00.123456-00:30", "2024-03-01T10:30:00.123", "2024-03-01T10:30:00.123"),
]
BAD_DATES = ["0000", "10000", "9999-13", "2023-02-29", "2024-01-01T24:00", "2024-01-01T00:00:60",
             "2024-01-01T00:00+14:01", "2024-01-01T00:00+15:00", "2024-01-01T00:00+01:60", "\u0662\u0660\u0662\u0664",
             "", "2024-1", "2024-01-01T10", "2024-01-01+05:00", None, 2024, ["2024"]]


@pytest.mark.parametrize("value,low,high", EDGE_DATES)
def test_date_range_covers_the_calendar_and_clamps_at_its_ends(value, low, high):
    assert date_range(value) == (low, high)


@pytest.mark.parametrize("value", BAD_DATES)
def test_date_range_raises_only_bad_value(value):
    with pytest.raises(BadValue):
        date_range(value)


# ResearchStudies whose periods touch the ends of the calendar, and texts at their edges
LONG_TEXT = "Needle-early " + "lorem ipsum " * 4200 + "needle-late"  # 50,000+ characters
LONG_URL = "https://example.org/fhir/PlanDefinition/" + "p" * 300
EDGE_RESOURCES = [
    {"resourceType": "ResearchStudy", "id": "rs-edge-end", "status": "active", "title": "Open ended",
     "period": {"start": "2024-01-01", "end": "9999-12-31"}},
    {"resourceType": "ResearchStudy", "id": "rs-edge-start", "status": "active", "title": "Year one",
     "period": {"start": "0001-01-01T00:00:00+05:00", "end": "0001-06"}},
    {"resourceType": "ResearchStudy", "id": "rs-edge-late", "status": "active", "title": "The very end",
     "period": {"start": "9999-12-31T23:59:59-12:00"}},
    {"resourceType": "ResearchStudy", "id": "rs-strasse", "status": "active", "title": "Große Straße Studie"},
    {"resourceType": "ResearchStudy", "id": "rs-nfd", "status": "active",
     "title": unicodedata.normalize("NFD", "Étude décomposée")},
    {"resourceType": "ResearchStudy", "id": "rs-comma", "status": "active", "title": "Alpha, beta | gamma $ delta"},
    {"resourceType": "ResearchStudy", "id": "rs-long", "status": "active", "title": "Long description",
     "description": LONG_TEXT},
    {"resourceType": "ResearchStudy", "id": "rs-nul", "status": "active", "title": "nul\u0000title"},
    {"resourceType": "PlanDefinition", "id": "pd-long-url", "status": "active", "url": LONG_URL},
]
FOUND = [
    # (resource type, query pairs, the ids found)
    ("ResearchStudy", [("date", "ge9999-12")], {"rs-edge-end", "rs-edge-late"}),
    ("ResearchStudy", [("date", "9999")], {"rs-edge-late"}),
    ("ResearchStudy", [("date", "9999-12-31T23:59:59-12:00")], {"rs-edge-late"}),
    ("ResearchStudy", [("date", "ap9999-12-31")], {"rs-edge-end", "rs-edge-late"}),
    ("ResearchStudy", [("date", "sa9000")], {"rs-edge-late"}),
    ("ResearchStudy", [("date", "le0001-01-01T00:00:00+14:00")], {"rs-edge-start"}),
    ("ResearchStudy", [("date", "le0001-01-01T00:00+05:00")], {"rs-edge-start"}),
    ("ResearchStudy", [("date", "eb0002")], {"rs-edge-start"}),
    ("ResearchStudy", [("date", "0001")], {"rs-edge-start"}),
    ("ResearchStudy", [("_lastUpdated", "le9999-12-31T23:59:59.999-12:00"), ("_id", "rs-edge-end")], {"rs-edge-end"}),
    # one normalisation for the index and the query: casefold (ß is ss), accents and NFD/NFC alike
    ("ResearchStudy", [("title", "grosse strasse")], {"rs-strasse"}),
    ("ResearchStudy", [("title", "GROSSE STRASSE")], {"rs-strasse"}),
    ("ResearchStudy", [("title:contains", "straße")], {"rs-strasse"}),
    ("ResearchStudy", [("title", "Étude décomposée")], {"rs-nfd"}),
    ("ResearchStudy", [("title", "etude decomposee")], {"rs-nfd"}),
    ("ResearchStudy", [("title:exact", "Große Straße Studie")], {"rs-strasse"}),
    # escapes: a comma, a pipe, a dollar taken literally
    ("ResearchStudy", [("title", "alpha\\, beta \\| gamma \\$ delta")], {"rs-comma"}),
    ("ResearchStudy", [("title:exact", "Alpha\\, beta \\| gamma \\$ delta")], {"rs-comma"}),
    ("ResearchStudy", [("title", "alpha\\,zzz,year")], {"rs-edge-start"}),
    # a long string: starts-with beyond the indexed column, :contains within STRING_KEEP_LENGTH
    ("ResearchStudy", [("description", LONG_TEXT[:MAX_VALUE_LENGTH])], {"rs-long"}),
    ("ResearchStudy", [("description:contains", "needle-early")], {"rs-long"}),
    ("ResearchStudy", [("description:contains", "needle-late")], set()),  # past the kept text
    ("ResearchStudy", [("description:exact", LONG_TEXT[:MAX_VALUE_LENGTH])], set()),
    # a uri longer than the key columns is compared on its first TOKEN_LENGTH characters
    ("PlanDefinition", [("url", LONG_URL)], {"pd-long-url"}),
    ("ResearchStudy", [("title", "nultitle")], {"rs-nul"}),  # index rows hold no control character
]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def values_client(request, tmp_path_factory):
    """A read-only app on SQLite or PostgreSQL (one database per module), loaded with the sample
    resources and EDGE_RESOURCES."""
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('values') / 'values.db'}"
    else:
        import psycopg

        admin = request.getfixturevalue("pg_server").get_uri()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "fhirstudy_values"')
        url = admin.replace("/postgres?", "/fhirstudy_values?")

        def drop():
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute('DROP DATABASE "fhirstudy_values" WITH (FORCE)')
    app = create_app({"TESTING": True, "DATABASE_URL": url, "BASE_URL": BASE})
    store = app.extensions[STORE_EXTENSION]
    store.clock = fixed_clock
    store.put_many(sample_resources() + EDGE_RESOURCES)
    yield app.test_client()
    close_store(app)
    if drop:
        drop()


def _search(client, rtype: str, pairs: list[tuple[str, str]]):
    return client.get(f"/{rtype}", query_string=urlencode([*pairs, ("_count", "100")]))


@pytest.mark.parametrize("rtype,pairs,expected", FOUND)
def test_edge_values_are_indexed_and_found(values_client, rtype, pairs, expected):
    response = _search(values_client, rtype, pairs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert {e["resource"]["id"] for e in response.get_json().get("entry", [])} == expected


@pytest.mark.parametrize("since", ["9999-12", "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"])
def test_history_since_takes_the_edges_of_the_calendar(values_client, since):
    response = values_client.get("/ResearchStudy/_history", query_string=urlencode([("_since", since)]))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_writes_with_dates_at_the_end_of_the_calendar(write_client):
    study = {"resourceType": "ResearchStudy", "status": "active", "title": "Until the end",
             "period": {"start": "9999-12", "end": "9999-12-31"}}
    put = write_client.put("/ResearchStudy/rs-forever", data=orjson.dumps({**study, "id": "rs-forever"}),
                           headers=FHIR_HEADERS)
    assert put.status_code == 201, put.get_data(as_text=True)
    found = write_client.get("/ResearchStudy?date=9999-12").get_json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["rs-forever"]
    again = write_client.post("/ResearchStudy", data=orjson.dumps(study),
                              headers={**FHIR_HEADERS, "If-None-Exist": "date=9999-12"})
    assert again.status_code == 200, again.get_data(as_text=True)  # the match: nothing created
    conditional = write_client.put("/ResearchStudy?date=9999-12-31T23:59:59-12:00", data=orjson.dumps(study),
                                   headers=FHIR_HEADERS)
    assert conditional.status_code == 201, conditional.get_data(as_text=True)  # no match: created


# --- values the server refuses ---------------------------------------------------------------------

BAD = [
    # (query pairs, the expression the OperationOutcome names, words in its diagnostics)
    ([("_count", "²")], "_count", "whole number"),
    ([("_offset", "²")], "_offset", "whole number"),
    ([("_offset", "99999999999999999999999")], "_offset", "whole number"),
    ([("_offset", str(MAX_OFFSET + 1))], "_offset", "next links"),
    ([("_cursor", _cursor([True]))], "_cursor", "not a value this server wrote"),
    ([("_cursor", _cursor(["x"]))], "_cursor", "not a value this server wrote"),
    ([("_cursor", _cursor([2**63]))], "_cursor", "not a value this server wrote"),
    ([("_cursor", _cursor([-1]))], "_cursor", "not a value this server wrote"),
    ([("_cursor", _cursor([1.5]))], "_cursor", "not a value this server wrote"),
    ([("_cursor", _cursor({"a": 1}))], "_cursor", "not a value this server wrote"),
    ([("_cursor", _cursor(["x", 1]))], "_cursor", "does not belong"),  # no _sort: the key alone
    ([("_sort", "title"), ("_cursor", _cursor([5, 1]))], "_cursor", "does not belong"),
    ([("_cursor", _cursor(["x", 1])), ("_sort", "recruitment-target")], "_cursor", "does not belong"),
    ([("_sort", "title"), ("_cursor", _cursor(["a\u0000", 1]))], "_cursor", "not a value this server wrote"),
    ([("_sort", "title"), ("_cursor", _cursor(["x" * (TOKEN_LENGTH + 1), 1]))], "_cursor", "not a value"),
    ([("_before", _cursor([True]))], "_before", "not a value this server wrote"),
    ([("status", ",".join(["active"] * (MAX_OR_VALUES + 1)))], "status", str(MAX_OR_VALUES)),
    ([("status", ",".join(["active"] * MAX_OR_VALUES))] * (MAX_SEARCH_VALUES // MAX_OR_VALUES + 1), "status",
     str(MAX_SEARCH_VALUES)),
    ([("progress-status-state-actual", ",".join(["recruiting$true"] * (MAX_SEARCH_VALUES // 4 + 1)))] * 2,
     "progress-status-state-actual", str(MAX_SEARCH_VALUES)),  # a composite value counts once per part
    ([("title", "x" * 50_000)], "title", str(MAX_VALUE_LENGTH)),
    ([("title", "\u0000")], "title", "U+0000"),
    ([("title:contains", "\u0000zzzzqqq")], "title:contains", "U+0000"),
    ([("identifier", "a\u001fb")], "identifier", "U+001F"),
    ([("date", "2024\u0000")], "date", "U+0000"),
    ([("_sort", "title\u0007")], "_sort", "U+0007"),
    ([("status", "active\\")], "status", "backslash"),
    ([("status", "act\\ive")], "status", "backslash"),
    ([("title", "a\\b")], "title", "backslash"),
    ([("status", "active")] * (MAX_SEARCH_CLAUSES + 1), "status", str(MAX_SEARCH_CLAUSES)),
    ([("_sort", ",".join(["title"] * (MAX_SORT_KEYS + 1)))], "_sort", str(MAX_SORT_KEYS)),
    ([("_include", "ResearchStudy:site")] * (MAX_INCLUDES + 1), "_include", str(MAX_INCLUDES)),
    ([("_total", "accurate")] * (MAX_RESULT_PARAMETERS + 1), "_total", str(MAX_RESULT_PARAMETERS)),
    ([("_elements", "a," * MAX_VALUE_LENGTH)], "_elements", str(MAX_VALUE_LENGTH)),
    ([("date", "9999-13")], "date", "9999-13"),
    ([("date", "0000")], "date", "0000"),
    ([("date", "2024-01-01T00:00:00+15:00")], "date", "time zone"),
    ([("_lastUpdated", "10000-01-01")], "_lastUpdated", "10000"),
]


@pytest.mark.parametrize("pairs,expression,words", BAD)
def test_bad_values_are_refused_when_parsed(pairs, expression, words):
    with pytest.raises(InvalidRequest) as caught:
        parse_search("ResearchStudy", pairs, load_registry())
    assert caught.value.expression == expression
    assert words.lower() in caught.value.diagnostics.lower()


@pytest.mark.parametrize("lenient", [False, True])
@pytest.mark.parametrize("pairs,expression,words", BAD)
def test_bad_values_are_400_operation_outcomes(values_client, pairs, expression, words, lenient):
    # POST _search: a form body is the way past the URL limit (a GET this long is a 414 first)
    headers = {"Prefer": "handling=lenient"} if lenient else {}
    response = values_client.post("/ResearchStudy/_search", data=urlencode(pairs), headers=headers,
                                  content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    (issue,) = response.get_json()["issue"]
    assert issue["expression"] == [expression]
    assert words.lower() in issue["diagnostics"].lower()


# criteria, not result parameters; a header past MAX_HEADER_BYTES is the server's 431 (test_server_boundary.py)
BAD_CRITERIA = [case for case in BAD if not case[1].startswith("_") and len(urlencode(case[0])) <= MAX_HEADER_BYTES]


@pytest.mark.parametrize("pairs,expression,words", BAD_CRITERIA)
def test_bad_criteria_of_conditional_writes_are_400(write_client, pairs, expression, words):
    study = {"resourceType": "ResearchStudy", "status": "active"}
    response = write_client.post("/ResearchStudy", data=orjson.dumps(study),
                                 headers={**FHIR_HEADERS, "If-None-Exist": urlencode(pairs)})
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["issue"][0]["expression"] == [expression]


ACCEPTED = [
    # (query pairs, what the parsed query holds)
    ([("_count", str(MAX_COUNT + 1))], lambda q: q.count == MAX_COUNT),
    ([("_offset", str(MAX_OFFSET))], lambda q: q.offset == MAX_OFFSET),
    ([("status", ",".join(["active"] * MAX_OR_VALUES))], lambda q: len(q.clauses[0].values) == MAX_OR_VALUES),
    ([("status", "active")] * MAX_SEARCH_CLAUSES, lambda q: len(q.clauses) == MAX_SEARCH_CLAUSES),
    ([("title", "x" * MAX_VALUE_LENGTH)], lambda q: q.clauses[0].values[0].exact == "x" * MAX_VALUE_LENGTH),
    ([("title", "tab\there")], lambda q: q.clauses[0].values[0].exact == "tab\there"),
    ([("title", "a\\,b")], lambda q: q.clauses[0].values == (StringValue("a,b", "a,b"),)),
    ([("title", "a\\\\,b")], lambda q: [v.exact for v in q.clauses[0].values] == ["a\\", "b"]),
    ([("identifier", "a\\|b")], lambda q: q.clauses[0].values == (TokenValue(None, "a|b"),)),
    ([("identifier", "s\\|t|a\\|b")], lambda q: q.clauses[0].values == (TokenValue("s|t", "a|b"),)),
    ([("identifier", "|a\\,b")], lambda q: q.clauses[0].values == (TokenValue(None, "a,b", no_system=True),)),
    ([("identifier", "x" * 300)], lambda q: q.clauses[0].values[0].code == "x" * TOKEN_LENGTH),
    ([("_sort", "title"), ("_cursor", encode_cursor(("a", 7)))], lambda q: q.cursor == ("a", 7)),
    ([("_cursor", encode_cursor((None, 7))), ("_sort", "-date")], lambda q: q.cursor == (None, 7)),
    ([("_sort", "recruitment-target"), ("_before", encode_cursor((120.0, 2)))], lambda q: q.before == (120.0, 2)),
]


# The costliest searches the limits let through: SQLite refused the first ("Expression tree is too
# large") when one parameter took 256 values.
_REST = MAX_SEARCH_VALUES - 2 * MAX_OR_VALUES
LARGEST = [
    [("date", ",".join(f"ne20{n % 100:02d}" for n in range(MAX_OR_VALUES)))] * 2 + [("date", "ne2001")] * _REST,
    [("title", ",".join(f"t{n}" for n in range(MAX_OR_VALUES)))] * 2 + [("title:contains", "t")] * _REST,
    [("progress-status-state-actual", "recruiting$true,completed$false")] * (MAX_SEARCH_VALUES // 4),
    [("status", ",".join(f"s{n}" for n in range(MAX_SEARCH_VALUES // MAX_SEARCH_CLAUSES)))] * MAX_SEARCH_CLAUSES,
]


@pytest.mark.parametrize("pairs", LARGEST, ids=["date-ne", "string", "composite", "token"])
def test_the_largest_searches_allowed_are_answered(values_client, pairs):
    assert len(pairs) <= MAX_SEARCH_CLAUSES
    assert _search(values_client, "ResearchStudy", pairs).status_code == 200


@pytest.mark.parametrize("pairs,holds", ACCEPTED)
def test_values_at_the_limits_are_accepted(pairs, holds):
    assert holds(parse_search("ResearchStudy", pairs, load_registry()))


# --- text normalisation -----------------------------------------------------------------------------

SAME_TEXT = [
    ("Straße", "STRASSE"),
    ("Étude", "etude"),
    (unicodedata.normalize("NFD", "Étude"), "Étude"),
    ("ﬁnal", "FINAL"),
    ("ΣΊΣΥΦΟΣ", "σίσυφος"),
    ("Hôpital Saint-Louis", "hopital saint-louis"),
    ("ℌilbert", "hilbert"),
]


@pytest.mark.parametrize("a,b", SAME_TEXT)
def test_index_query_and_terminology_normalise_alike(a, b):
    assert normalize(a) == normalize(b)
    assert fold(a) == fold(b)
    assert index_rows({"resourceType": "ResearchStudy", "title": a}, [load_registry().get("ResearchStudy", "title")])[
        "string"][0]["value"] == parse_search("ResearchStudy", [("title", b)], load_registry()).clauses[0].values[0].normalized


@pytest.mark.parametrize("text", ["plain ascii", "Große Straße " * 40, unicodedata.normalize("NFD", "é" * 300),
                                  "a" + "\u0301" * 500 + "b" * 300, "ﬃ" * 400])
def test_normalised_prefix_is_the_prefix_of_the_normalised_text(text):
    for length in (1, STRING_INDEX_LENGTH, 1000):
        assert normalized_prefix(text, length) == normalize(text)[:length]


FHIRPATH_LITERALS = [
    ("'Étude'", "Étude"),
    ("'Stra\\u00dfe'", "Straße"),
    ("'it\\'s'", "it's"),
    ("'a\\\\b'", "a\\b"),
]


@pytest.mark.parametrize("literal,value", FHIRPATH_LITERALS)
def test_fhirpath_string_literals_keep_their_text(literal, value):
    expression = compile_expression(f"ResearchStudy.identifier.where(value={literal}).system")
    study = {"resourceType": "ResearchStudy", "identifier": [{"system": "s", "value": value}, {"system": "t", "value": "x"}]}
    assert [item.value for item in expression.evaluate(study)] == ["s"]


def test_fhirpath_refuses_an_unknown_escape():
    with pytest.raises(UnsupportedExpression):
        compile_expression("ResearchStudy.identifier.where(value='\\q').system")


# --- string index rows are bounded -------------------------------------------------------------------

def test_string_rows_keep_a_bounded_text():
    assert MAX_VALUE_LENGTH <= STRING_KEEP_LENGTH  # a search value never outgrows what the index keeps
    param = load_registry().get("ResearchStudy", "description")
    (row,) = index_rows({"resourceType": "ResearchStudy", "description": LONG_TEXT}, [param])["string"]
    assert len(row["value"]) == STRING_INDEX_LENGTH
    assert row["full"] == normalize(LONG_TEXT)[:STRING_KEEP_LENGTH]
    assert row["exact"] is None  # longer than any search value: :exact could never match it
    (short,) = index_rows({"resourceType": "ResearchStudy", "description": "Short"}, [param])["string"]
    assert short == {"param": "description", "value": "short", "full": None, "exact": "Short", "part": 0}


def test_key_columns_are_cut_and_hold_no_control_characters():
    registry = load_registry()
    plan = {"resourceType": "PlanDefinition", "url": LONG_URL + "\u0000"}
    (uri,) = index_rows(plan, [registry.get("PlanDefinition", "url")])["uri"]
    assert uri["uri"] == LONG_URL[:TOKEN_LENGTH]
    study = {"resourceType": "ResearchStudy", "site": [{"reference": "Location/" + "i" * 100}],
             "identifier": [{"system": "s\u0001", "value": "v" * 300}]}
    (reference,) = index_rows(study, [registry.get("ResearchStudy", "site")])["reference"]
    assert len(reference["target_id"]) == 64
    (token,) = index_rows(study, [registry.get("ResearchStudy", "identifier")])["token"]
    assert token["system"] == "s" and token["code"] == "v" * TOKEN_LENGTH
