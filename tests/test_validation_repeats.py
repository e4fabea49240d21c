"""The verdict cache of ``fhirstudy.validation.repeats`` never says "clean" of a document the exact
checks would fault: every break of a value, of the structure or of the Python types is caught, a
random mutation never slips through, the values it sets aside are typed as the models type them,
and documents that differ only in their values share one verdict.
"""
from __future__ import annotations

import copy
import enum
import typing
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLES
from fhirstudy.errors import ValidationFailed
from fhirstudy.limits import MAX_JSON_DEPTH
from fhirstudy.pipeline import convert
from fhirstudy.validation import checks, repeats, shapes, validate_bundle, validate_resource

ROOT = Path(__file__).resolve().parent.parent


def _bundles(*inputs) -> list[dict]:
    return [c.bundle for c in convert([str(i) for i in inputs], unmapped=False) if getattr(c, "bundle", None)]


@pytest.fixture(scope="module")
def bundles() -> list[dict]:
    if not SAMPLES.exists():
        pytest.skip(f"registry samples {SAMPLES} not found")
    return _bundles(SAMPLES, ROOT / "seeds")


@pytest.fixture(scope="module")
def sample(bundles) -> dict:
    """A converted trial with sites, contacts, references and identifiers."""
    return next(b for b in bundles if sum(e["resource"]["resourceType"] == "Location" for e in b["entry"]) > 3)


def test_converted_samples_and_seeds_are_clean_both_ways(bundles):
    fast = repeats.Repeats(repeats.VerdictCache())
    for bundle in bundles:
        assert checks.bundle_issues(bundle) == []
        assert fast.bundle_is_clean(bundle)
        for entry in bundle["entry"]:
            assert fast.resource_is_clean(entry["resource"]) == (checks.resource_issues(entry["resource"]) == [])


class _Colour(enum.Enum):
    RED = "red"


class _Text(str):
    pass


def _first(bundle: dict, kind: str) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind)


def _deep(levels: int) -> dict:
    node: dict = {"url": "https://example.org/x", "valueString": "x"}
    for _ in range(levels):
        node = {"url": "https://example.org/x", "extension": [node]}
    return node


# (name, how a converted bundle is broken): each leaves a problem the exact checks report.
BROKEN = [
    ("id with a space", lambda b: _first(b, "Location").update(id="site 1")),
    ("id of 65 characters", lambda b: _first(b, "Location").update(id="a" * 65)),
    ("empty id", lambda b: _first(b, "Location").update(id="")),
    ("id with an accent", lambda b: _first(b, "Location").update(id="sité-1")),
    ("id with a trailing line feed", lambda b: _first(b, "Location").update(id="site-1\n")),
    ("empty reference", lambda b: _first(b, "ResearchStudy")["site"][0].update(reference="")),
    ("reference with a control character", lambda b: _first(b, "ResearchStudy")["site"][0].update(reference="Location/\x07")),
    ("reference to no entry", lambda b: _first(b, "ResearchStudy")["site"][0].update(reference="Location/nowhere")),
    ("urn:uuid to no entry", lambda b: _first(b, "ResearchStudy")["site"][0].update(reference="urn:uuid:0")),
    ("source with a control character", lambda b: _first(b, "Location")["meta"].update(source="urn:x\x01")),
    ("source as a number", lambda b: _first(b, "Location")["meta"].update(source=5)),
    ("identifier value of a unicode space", lambda b: _first(b, "ResearchStudy")["identifier"][0].update(value="\u2003")),
    ("empty identifier value", lambda b: _first(b, "ResearchStudy")["identifier"][0].update(value="")),
    ("identifier value as a list", lambda b: _first(b, "ResearchStudy")["identifier"][0].update(value=["x"])),
    ("empty fullUrl", lambda b: b["entry"][1].update(fullUrl="")),
    ("fullUrl with a control character", lambda b: b["entry"][1].update(fullUrl="urn:uuid:\x1f")),
    ("request url missing", lambda b: b["entry"][1]["request"].pop("url")),
    ("unknown element", lambda b: _first(b, "Location").update(bogus="x")),
    ("a quantity's value as text", lambda b: _first(b, "Location").update(
        position={"latitude": 1, "longitude": 2, "altitude": "3"})),
    ("a tuple for an array", lambda b: _first(b, "ResearchStudy").update(site=tuple(_first(b, "ResearchStudy")["site"]))),
    ("a UUID object", lambda b: _first(b, "Location").update(name=uuid.UUID(int=1))),
    ("an enum", lambda b: _first(b, "Location").update(status=_Colour.RED)),
    ("a str subclass", lambda b: _first(b, "Location").update(status=_Text("bogus"))),
    ("NaN", lambda b: _first(b, "Location").update(position={"latitude": float("nan"), "longitude": 2.0})),
    ("a contained resource of a type without definitions", lambda b: _first(b, "ResearchStudy").update(
        contained=[{"resourceType": "Patient", "id": "p 1"}])),
    ("an entry resource nested too deep", lambda b: _first(b, "Location").update(
        extension=[_deep(MAX_JSON_DEPTH // 2 - 2)])),
    ("status not in the value set", lambda b: _first(b, "Location").update(status="bogus")),
    ("a bound code of a Bundle entry changed", lambda b: b["entry"][1]["request"].update(method="FETCH")),
    ("a date that is no day of the calendar", lambda b: _first(b, "ResearchStudy")["period"].update(start="2023-02-30")),
    ("a date of the wrong form", lambda b: _first(b, "ResearchStudy")["period"].update(start="June 2004")),
    ("a count below zero", lambda b: _first(b, "ResearchStudy")["recruitment"].update(actualNumber=-1)),
    ("a count as a fraction", lambda b: _first(b, "ResearchStudy")["recruitment"].update(actualNumber=1.5)),
    ("a count as text", lambda b: _first(b, "ResearchStudy")["recruitment"].update(actualNumber="31")),
    ("a count as a boolean", lambda b: _first(b, "ResearchStudy")["recruitment"].update(actualNumber=True)),
    ("a count beyond 32 bits", lambda b: _first(b, "ResearchStudy")["recruitment"].update(actualNumber=2 ** 40)),
    ("a title as a number", lambda b: _first(b, "ResearchStudy").update(title=5)),
    ("a title as a list", lambda b: _first(b, "ResearchStudy").update(title=["x"])),
    ("an empty title", lambda b: _first(b, "ResearchStudy").update(title="")),
    ("a title with a control character", lambda b: _first(b, "ResearchStudy").update(title="a\x0bb")),
    ("a latitude of infinity", lambda b: _first(b, "Location").update(
        position={"latitude": float("inf"), "longitude": 2.0})),
    ("a narrative without its div", lambda b: _first(b, "ResearchStudy")["text"].pop("div")),
    ("a narrative status not in the value set", lambda b: _first(b, "ResearchStudy")["text"].update(status="made")),
    ("a contained resource with a bad id", lambda b: _first(b, "ResearchStudy").update(
        contained=[{"resourceType": "Practitioner", "id": "a b", "name": [{"text": "x"}]}])),
]


@pytest.mark.parametrize("name,change", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_document_is_never_called_clean(sample, name, change):
    fast = repeats.Repeats(repeats.VerdictCache())
    assert fast.bundle_is_clean(sample)  # the template of the sound sample is cached: the worst case
    broken = copy.deepcopy(sample)
    change(broken)
    exact = checks.bundle_issues(broken)
    assert exact, f"{name}: the exact checks should fault it"
    assert not fast.bundle_is_clean(broken)
    with pytest.raises(ValidationFailed) as info:
        validate_bundle(broken)
    assert [(i.field, i.reason) for i in info.value.issues] == [(i.field, i.reason) for i in exact]


def test_objects_json_cannot_hold_get_no_fast_verdict(sample):
    """A key that is not a string, a str subclass: the exact checks see Python objects, so no
    shape stands for them."""
    study = copy.deepcopy(_first(sample, "ResearchStudy"))
    fast = repeats.Repeats(repeats.VerdictCache())
    assert fast.resource_is_clean(study)
    for change in ({"period": {**study["period"], 1: "x"}}, {"title": _Text("x")}, {"period": _Mapping(study["period"])}):
        assert not fast.resource_is_clean({**study, **change}), change


class _Mapping(dict):
    pass


def test_a_broken_resource_on_its_own_is_never_called_clean(sample):
    location = _first(sample, "Location")
    validate_resource(location)
    script = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><script>x</script></div>'}
    for bad in ({**location, "id": "a b"}, {**location, "meta": {"source": "x\x00"}}, {**location, "mode": "x"},
                {**location, "text": script}):
        assert checks.resource_issues(bad)
        assert not repeats.Repeats(repeats.VerdictCache()).resource_is_clean(bad)
        with pytest.raises(ValidationFailed):
            validate_resource(bad)


_TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "\u2003", "a b", "x\x00", "é", "Location/x",
                                                          "urn:uuid:1", "#person-1", "a" * 70, "5"]))
_VALUE = st.one_of(_TEXT, st.integers(-3, 3), st.booleans(), st.none(), st.floats(allow_nan=True),
                   st.lists(_TEXT, max_size=2), st.just({}))


def _leaves(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield from _leaves(value, (*path, n))
    else:
        yield path


def _set(node, path, value):
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value


_SHARED: dict = {}


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_random_mutation_never_slips_through(sample, data):
    # one cache for every example (it only ever holds true verdicts): the sample's shape is warm,
    # and so is every earlier mutation's, the worst case for a wrong "clean"
    fast = _SHARED.setdefault("repeats", repeats.Repeats(repeats.VerdictCache()))
    assert fast.bundle_is_clean(sample)
    mutated = copy.deepcopy(sample)
    paths = list(_leaves(mutated))
    for _ in range(data.draw(st.integers(1, 3))):
        _set(mutated, data.draw(st.sampled_from(paths)), data.draw(_VALUE))
    if fast.bundle_is_clean(mutated):
        assert checks.bundle_issues(mutated) == []


def _unwrap(annotation):
    """``X | None`` -> X; ``list[X]`` -> X."""
    while typing.get_origin(annotation) in (typing.Union, list, typing.List) or str(typing.get_origin(annotation)) == \
            "<class 'types.UnionType'>":
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _model_field(path: str):
    from fhir.resources import get_fhir_model_class

    first, *steps = path.split(".")
    model = get_fhir_model_class(first)
    for n, step in enumerate(steps):
        field = next(f for f in model.model_fields.values() if f.alias == step)
        if n == len(steps) - 1:
            return field
        model = _unwrap(field.annotation).get_model_klass()


def test_the_values_set_aside_are_checked_as_the_models_type_them():
    """Each primitive element's rule checks values with the model field's own type, and its
    placeholder passes both the walk and the model; bound elements and booleans keep their values."""
    checked = 0
    for path, element in checks._elements().items():
        types = element.get("types") or []
        if "contentReference" in element or len(types) != 1 or not checks._is_primitive(types[0]):
            continue
        ctx, key = path.rsplit(".", 1)
        rule = shapes._primitive(ctx, key, path, types[0])
        if path in checks._bindings() or types[0] == "boolean":
            assert rule.placeholder is None, path
            continue
        if rule.placeholder is None:
            continue
        annotation = _unwrap(_model_field(path).annotation)
        assert shapes._field_annotation(ctx, key) == annotation, path
        walker = checks._Walker()
        walker.value(rule.placeholder, path, types[0], path)
        assert walker.issues == [], path
        checked += 1
    assert checked > 200


def test_documents_that_differ_only_in_values_share_one_verdict(bundles):
    """The point of shapes: a trial like another, with other titles, dates, counts and names,
    is validated from the cache (no new shape), and still exactly."""
    bundle = max(bundles, key=lambda b: len(b["entry"]))
    cache = repeats.VerdictCache()
    fast = repeats.Repeats(cache)
    assert fast.bundle_is_clean(bundle)
    misses = cache.misses
    changed = copy.deepcopy(bundle)
    study = _first(changed, "ResearchStudy")
    study.update(title="Another title", date="2021-03-04", period={"start": "2019-01", "end": "2022-12-31"})
    study["recruitment"]["actualNumber"] = 7
    study["text"]["div"] = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Another title</p></div>'
    assert checks.bundle_issues(changed) == []
    assert fast.bundle_is_clean(changed)
    assert cache.misses == misses, "a change of values alone made a new shape"


@pytest.mark.parametrize("value", ["", " ", "a b", "abc", "abc\n", "é", "1", "a" * 64, "a" * 65, "2024-01", "x\x00"])
@pytest.mark.parametrize("type_code", ["id", "string", "uri", "url", "canonical", "code", "date", "dateTime"])
def test_the_batch_string_rule_is_the_walks_rule(value, type_code):
    walker = checks._Walker()
    walker.value(value, "Unbound.element", type_code, "x")
    assert checks.strings_are_valid([value], type_code) == (not walker.issues)


def test_the_verdict_cache_keeps_to_its_budget(bundles):
    cache = repeats.VerdictCache(max_bytes=20_000)
    fast = repeats.Repeats(cache)
    for bundle in bundles:
        fast.bundle_is_clean(bundle)
        assert cache.size <= 20_000
    assert cache.misses > 0


def test_a_value_accepted_before_is_accepted_only_for_its_own_rule(sample):
    """The memo of accepted values is per batch rule: a name with a space, accepted as a string,
    is still no id; a count accepted as an unsignedInt, 0, is still no positiveInt."""
    fast = repeats.Repeats(repeats.VerdictCache())
    assert fast.bundle_is_clean(sample)
    assert fast.bundle_is_clean(sample)  # the second time from the memo
    name = _first(sample, "Location")["name"]
    assert " " in name and len(name) <= shapes.AcceptedValues.MAX_LENGTH
    broken = copy.deepcopy(sample)
    _first(broken, "Location")["meta"]["versionId"] = name  # an id
    assert checks.bundle_issues(broken)
    assert not fast.bundle_is_clean(broken)
    group = {"resourceType": "Group", "id": "g", "membership": "definitional", "type": "person", "quantity": 0}
    assert fast.resource_is_clean(group)
    assert fast.resource_is_clean(group)
    location = {"resourceType": "Location", "id": "l",
                "contact": [{"telecom": [{"system": "phone", "value": "1", "rank": 0}]}]}  # rank: a positiveInt
    assert checks.resource_issues(location)
    assert not fast.resource_is_clean(location)


def test_the_accepted_values_keep_to_their_budget(bundles):
    cache = repeats.VerdictCache()
    cache.accepted = shapes.AcceptedValues(max_values=500)
    fast = repeats.Repeats(cache)
    for bundle in bundles:
        assert fast.bundle_is_clean(bundle)
        assert cache.accepted.count <= 500
