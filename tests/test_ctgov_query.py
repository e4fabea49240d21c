"""The queries ``fetch`` and ``sync`` send: options and query files become the API's parameters,
and a mistake is one line naming the option, before any request."""
from __future__ import annotations

import pytest

from fhirstudy.ctgov.query import Query, QueryError, query, read_query_file


def test_options_become_the_apis_parameters():
    q = query(condition="breast cancer", status="recruiting, NOT_YET_RECRUITING", near="42.36,-71.06,50mi",
              nct="nct01234567,NCT07654321", term="HER2", advanced="AREA[Phase]PHASE3")
    assert q.params() == {
        "query.cond": "breast cancer", "query.term": "HER2",
        "filter.overallStatus": "RECRUITING,NOT_YET_RECRUITING",
        "filter.geo": "distance(42.36,-71.06,50mi)",
        "filter.ids": "NCT01234567,NCT07654321",
        "filter.advanced": "(AREA[Phase]PHASE3)"}
    assert q.params(updated_since="2026-11-29")["filter.advanced"] == (
        "(AREA[Phase]PHASE3) AND AREA[LastUpdatePostDate]RANGE[2026-11-29,MAX]")
    assert query().params() == {} and query().describe() == "the whole registry"
    assert query(near="1.5,2,10km").params()["filter.geo"] == "distance(1.5,2,10km)"
    assert query(near="1,2,10").params()["filter.geo"] == "distance(1,2,10mi)"
    assert query(sort="LastUpdatePostDate:desc, EnrollmentCount").params()["sort"] == (
        "LastUpdatePostDate:desc,EnrollmentCount")


def test_the_key_is_the_parameters_not_the_name():
    assert Query("a", condition="x").key() == Query("b", condition="x").key()
    assert Query("a", condition="x").key() != Query("a", condition="y").key()


@pytest.mark.parametrize("options, says", [
    ({"status": "RECRUTING"}, "--status 'RECRUTING' is not a ClinicalTrials.gov status"),
    ({"nct": "NCT123"}, "--nct 'NCT123' is not an NCT number"),
    ({"near": "boston"}, "--near 'boston': expected LAT,LON,DISTANCE"),
    ({"near": "91,0,5mi"}, "latitude must be within"),
    ({"near": "0,0,0mi"}, "the distance must be above 0"),
    ({"condition": "  "}, "--condition is empty"),
    ({"name": "no spaces please"}, "query name"),
    ({"sort": "LastUpdatePostDate:sideways"}, "--sort"),
])
def test_a_bad_option_says_which_and_why(options, says):
    with pytest.raises(QueryError) as caught:
        query(**options)
    assert says in str(caught.value)


def test_a_query_file_holds_one_query_or_several(tmp_path):
    one = tmp_path / "nightly.toml"
    one.write_text('condition = "breast cancer"\nstatus = ["RECRUITING", "NOT_YET_RECRUITING"]\n')
    [q] = read_query_file(one)
    assert q.name == "nightly" and q.status == ("RECRUITING", "NOT_YET_RECRUITING")
    several = tmp_path / "all.toml"
    several.write_text('[[query]]\nname = "breast"\ncondition = "breast cancer"\n\n'
                       '[[query]]\nname = "cf"\ncondition = "cystic fibrosis"\nnear = "42.36,-71.06,50mi"\n')
    assert [(q.name, q.condition) for q in read_query_file(several)] == [
        ("breast", "breast cancer"), ("cf", "cystic fibrosis")]


@pytest.mark.parametrize("text, says", [
    ("condition = ", "not TOML"),
    ("colour = 'blue'", "unknown key 'colour'"),
    ("condition = 3", "condition must be text"),
    ("status = 'RECRUITING'\n[[query]]\ncondition = 'x'", "put every key inside a [[query]] table"),
    ("[[query]]\nname='a'\ncondition='x'\n[[query]]\nname='a'\ncondition='y'", "two queries are named 'a'"),
    ("", "no query"),
    ("[[query]]\nstatus = 'NOPE'", "query 1: --status 'NOPE'"),
])
def test_a_bad_query_file_says_where(tmp_path, text, says):
    path = tmp_path / "q.toml"
    path.write_text(text)
    with pytest.raises(QueryError) as caught:
        read_query_file(path)
    assert says in str(caught.value) and str(path) in str(caught.value)
