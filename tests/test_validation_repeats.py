"""The verdict cache of ``fhirstudy.validation.repeats`` never says "clean" of a document the exact
checks would fault: every break of a name, of the structure or of the Python types is caught, a
random mutation never slips through, and the names it sets aside are typed as the models type them.
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
from fhirstudy.validation import checks, repeats, validate_bundle, validate_resource

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


def test_a_broken_resource_on_its_own_is_never_called_clean(sample):
    location = _first(sample, "Location")
    validate_resource(location)
    for bad in ({**location, "id": "a b"}, {**location, "meta": {"source": "x\x00"}}, {**location, "mode": "x"}):
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


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_random_mutation_never_slips_through(sample, data):
    fast = repeats.Repeats(repeats.VerdictCache())
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


def test_the_names_set_aside_are_typed_as_the_models_type_them():
    rules = repeats._name_rules()
    assert rules and set(rules) == set(repeats.NAMES)
    for path, element in checks._elements().items():
        name = path.rsplit(".", 1)[1]
        if name not in rules or "contentReference" in element:
            continue
        type_code = element["types"][0]
        if type_code not in rules[name][0]:
            continue  # an object or a number there: the placeholder string is refused
        annotation = _unwrap(_model_field(path).annotation)
        # each value of the name is checked as every one of these types (BackboneElement.id is an
        # id in the definitions and a string in the models: both are checked)
        assert annotation in {repeats._PYDANTIC_TYPES[t] for t in rules[name][0]}, f"{path}: {annotation}"


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
