"""Hypothesis strategies for fuzzing the running app, generated from the data it serves.

:class:`Corpus` holds what the strategies draw from: the served types and every search parameter
of the registry (code, type, modifiers, targets), and the ids, element names and search values
found in the resources the app was loaded with.  :class:`Request` is one HTTP request, with the
curl command that replays it.

Nothing here knows the answers: the strategies only make requests, valid, nearly valid and hostile.
"""
from __future__ import annotations

import base64
import copy
import json
import shlex
from dataclasses import dataclass, field
from urllib.parse import quote

from hypothesis import strategies as st

from fhirstudy.search.query import PREFIXES, RESULT_PARAMETERS, SUMMARY_VALUES, TOTAL_VALUES
from fhirstudy.search.registry import MODIFIERS, Registry

TOKEN = "fuzz-write-token"
UNKNOWN_TYPES = ("Patient", "researchstudy", "Resource", "Bundle", "OperationOutcome", "_history", "$export")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
WRITE_METHODS = ("POST", "PUT", "DELETE", "PATCH")

# integers as clients send them: Unicode digits int() takes, beyond 64 bits, signs, blanks
EDGE_INTEGERS = ("0", "1", "2", "20", "500", "501", "-1", "+1", "007", " 3", "3 ", "", "²", "١٢", "1_000",
                 "0x10", "1e3", "1.0", str(2**31), str(2**63 - 1), str(2**63), str(2**64), str(10**20),
                 "-" + str(2**63 + 1), "9" * 400)
EDGE_DATES = ("0001", "0001-01-01", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00",
              "0001-01-01T00:00:00-12:00", "9999", "9999-12", "9999-12-31", "9999-12-31T23:59:59.999Z",
              "9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59+14:00", "0000", "2024-02-29", "2023-02-29",
              "2024-13", "2024-00-10", "2024-12-32", "2024-06-01T24:00:00Z", "2024-06-01T23:59:60Z",
              "2024-06-01T12:00:00+99:99", "2024-06-01T12:00:00.123456789Z", "2024-06-01T12:00", "99999",
              "2024-06-01 12:00:00")
# characters that mean something in a search value, or to a database, or to a terminal
NASTY = ("\x00", "\u0301", "e\u0301", "\u202e", "\u05d0\u05d1", "\ufeff", "\U0001f600", "\ufffd", ",", "\\",
         "|", "$", "%", "&", "=", "+", "#", "?", "/", ":", "*", "'", '"', "\n", "\t", " ", "_", "%25", "\\,")
# raw %-escapes that do not decode to valid UTF-8 (surrogates, overlong, truncated) or at all
RAW_ESCAPES = ("%ED%A0%80", "%ED%BF%BF", "%FF", "%C0%80", "%00", "%", "%G1", "%2", "%E2%80%AE", "%F4%90%80%80")
LONG_LENGTHS = (257, 2049, 50_000)
MANY_OR_VALUES = (257, 1001, 5000)
SHORT = 64  # characters of each of many OR values (5,000 values of 50,000 characters would be 250 MB)
DEPTHS = (10, 63, 64, 65, 200, 5000)
OVERSIZE_BYTES = 8 * 2**20 + 1
# The HTTP server in front of the app (werkzeug's, like http.server) answers a request line or a
# header line over 64 KiB itself, before the app sees it; longer values go in bodies (forms, Bundles).
LINE_LIMIT = 60_000


@dataclass(repr=False)
class Corpus:
    """What the strategies draw from: the registry's types and parameters, and the loaded data."""

    registry: Registry
    resources: list[dict]
    ids: dict[str, list[str]] = field(default_factory=dict)
    values: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    elements: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, registry: Registry, resources: list[dict]) -> Corpus:
        """A corpus of ``resources`` as loaded: their ids by type, each parameter's values in them."""
        corpus = cls(registry, resources)
        for resource in resources:
            rtype = resource["resourceType"]
            corpus.ids.setdefault(rtype, []).append(resource["id"])
            for code, param in registry.params(rtype).items():
                found = corpus.values.setdefault((rtype, code), [])
                for item in param.evaluate(resource):
                    found.extend(v for v in _search_strings(item.value) if v not in found)
        corpus.elements = sorted({key for r in resources for key in r})
        return corpus

    def __repr__(self) -> str:  # strategies print their arguments: keep it short
        return f"Corpus({len(self.resources)} resources)"


def _search_strings(value) -> list[str]:
    """The strings a client would search for to find ``value`` (a JSON value of a resource)."""
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, (str, int, float)):
        return [str(value)]
    if isinstance(value, list):
        return [s for v in value for s in _search_strings(v)]
    if not isinstance(value, dict):
        return []
    out = []
    code = value.get("code", value.get("value"))
    if isinstance(code, str):
        out += [code, f"{value.get('system', '')}|{code}"]
    for key in ("reference", "start", "end", "text", "display"):
        if isinstance(value.get(key), str):
            out.append(value[key])
    for coding in value.get("coding") or []:
        out += _search_strings(coding)
    return out


@dataclass(frozen=True)
class Request:
    """One HTTP request: the target is already %-encoded, the body raw bytes (or None)."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None

    @property
    def authorized(self) -> bool:
        """Whether it presents the app's write token."""
        return any(k == "Authorization" and v.partition(" ")[0].lower() == "bearer"
                   and v.partition(" ")[2].strip() == TOKEN for k, v in self.headers)

    def __repr__(self) -> str:  # Hypothesis prints drawn values: keep huge targets and bodies short
        target = self.target if len(self.target) <= 400 else f"{self.target[:400]}... ({len(self.target)} chars)"
        body = self.body if self.body is None or len(self.body) <= 400 else \
            f"{self.body[:400]!r}... ({len(self.body)} bytes)"
        return f"Request({self.method} {target} headers={list(self.headers)} body={body})"

    def curl(self, base: str) -> str:
        """A curl command that sends the same request (bodies over 2 KB are described, not inlined)."""
        parts = ["curl", "-sS", "-X", self.method, "--globoff", shlex.quote(base + self.target)]
        parts += [f"-H {shlex.quote(f'{k}: {v}')}" for k, v in self.headers]
        if self.body is not None:
            if len(self.body) > 2048:
                parts.append(f"--data-binary @body  # {len(self.body)} bytes starting {self.body[:120]!r}")
            else:
                parts.append(f"--data-binary {shlex.quote(self.body.decode('utf-8', 'backslashreplace'))}")
        return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# text and values


def encode(text: str) -> str:
    """``text`` %-encoded for a URL, keeping the characters a query string often carries raw."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="/:,|$*'!@()")


nasty_text = st.one_of(
    st.text(max_size=12),
    st.lists(st.sampled_from(NASTY), min_size=1, max_size=4).map("".join),
    st.builds(lambda n, c: c * n, st.sampled_from(LONG_LENGTHS), st.sampled_from(("x", "é", "\x00", "\\"))),
)
_edge_integer = st.sampled_from(EDGE_INTEGERS)
edge_integers = st.one_of(_edge_integer, _edge_integer, _edge_integer, st.integers(-(2**70), 2**70).map(str))


@st.composite
def dates(draw) -> str:
    """FHIR dates at every precision, at and past the calendar's edges, with edge time zones."""
    if draw(st.integers(0, 2)):
        return draw(st.sampled_from(EDGE_DATES))
    text = draw(st.sampled_from(("0001", "1970", "2024", "9999", "0000")) | st.integers(0, 99999).map("{:04d}".format))
    for part in (st.sampled_from(("-01", "-02", "-12", "-00", "-13")),
                 st.sampled_from(("-01", "-28", "-29", "-31", "-00", "-32")),
                 st.sampled_from(("T00:00", "T23:59", "T24:00", "T12:60"))):
        if not draw(st.booleans()):
            return text
        text += draw(part)
    text += draw(st.sampled_from((":00", ":59.999", ":59.9999999", ":61", "")))
    return text + draw(st.sampled_from(("", "Z", "+14:00", "-12:00", "+00:00", "-00:00", "+23:59", "+24:00", "+14:01")))


numbers = st.one_of(edge_integers, st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(("1e400", "-1e400", "1e-400", ".5", "5.", "1.50", "NaN", "inf", "-0")))


def values_for(corpus: Corpus, rtype: str, code: str) -> st.SearchStrategy[str]:
    """Values for parameter ``code`` of ``rtype``: the ones in the data, ones of its type (with
    prefixes, for any type), nasty text."""
    param = corpus.registry.get(rtype, code)
    kind = param.type if param else "string"
    found = corpus.values.get((rtype, code)) or []
    typed = {"date": dates(), "number": numbers,
             "token": st.tuples(nasty_text, nasty_text).map("|".join) | nasty_text,
             "reference": st.sampled_from([f"{t}/{i}" for t, ids in corpus.ids.items() for i in ids]) | nasty_text,
             "uri": st.sampled_from(("http://x", "urn:uuid:1", "https://clinicaltrials.gov")) | nasty_text,
             "string": nasty_text,
             "special": st.tuples(numbers, numbers, numbers | st.just(""),  # near: lat|long|distance|unit
                                  st.sampled_from(("km", "mi", "[mi_i]", "[mi_us]", "m", "")) | nasty_text)
             .map("|".join) | st.tuples(numbers, numbers).map("|".join) | nasty_text}
    if kind == "composite":
        parts = [values_for(corpus, rtype, c.code) if corpus.registry.get(rtype, c.code) else typed[c.type]
                 for c in param.components]
        value = st.tuples(*parts).map("$".join)
    else:
        value = typed[kind]
    if found:
        value = st.sampled_from(found) | value
    prefixed = st.tuples(st.sampled_from(PREFIXES), value).map("".join)
    single = value | prefixed
    return st.one_of(
        single,
        st.lists(single, min_size=2, max_size=4).map(",".join),
        st.builds(lambda n, v: ",".join([v[:SHORT]] * n), st.sampled_from(MANY_OR_VALUES), single),
        st.tuples(single, st.sampled_from(("\\", "\\,", ",", "\\\\", "$", "|"))).map("".join),
    )


def _b64(document) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)
cursors = st.one_of(
    json_values.map(_b64),
    st.sampled_from(([True], ["x"], [None], [1e308], [[1]], [{"a": 1}], [2**70], ["x", 2**63], [], {})).map(_b64),
    nasty_text,
)


# ---------------------------------------------------------------------------------------------
# query strings


def _codes(corpus: Corpus, rtype: str) -> list[str]:
    return sorted(corpus.registry.params(rtype)) or ["_id"]


def result_parameter(corpus: Corpus, rtype: str) -> st.SearchStrategy[tuple[str, str]]:
    """One result parameter (``_count``, ``_sort``, ``_include``...) with valid and hostile values."""
    types = list(corpus.registry.served_types)
    refs = {t: [c for c, p in corpus.registry.params(t).items() if p.type == "reference"] for t in types}
    sort_key = st.tuples(st.sampled_from(("", "-", "--")), st.sampled_from(_codes(corpus, rtype)) | nasty_text)
    include = st.one_of(
        st.sampled_from([f"{t}:{c}" for t in types for c in refs[t]] + [f"{t}:*" for t in types]),
        st.builds(lambda t, c, target: f"{t}:{c}:{target}", st.sampled_from(types),
                  st.sampled_from(sorted({c for cs in refs.values() for c in cs})), st.sampled_from(types)),
        nasty_text)
    by_name = {
        "_count": edge_integers, "_offset": edge_integers,
        "_sort": st.lists(sort_key.map("".join), min_size=1, max_size=3).map(",".join),
        "_total": st.sampled_from(TOTAL_VALUES) | nasty_text,
        "_summary": st.sampled_from(SUMMARY_VALUES) | nasty_text,
        "_elements": st.lists(st.sampled_from(corpus.elements) | nasty_text, min_size=1, max_size=4).map(",".join),
        "_include": include, "_revinclude": include, "_include:iterate": include, "_revinclude:iterate": include,
        "_cursor": cursors, "_before": cursors,
        "_format": st.sampled_from(("json", "application/fhir+json", "xml", "text/html", "")) | nasty_text,
        "_pretty": st.sampled_from(("true", "false")) | nasty_text,
    }
    assert set(by_name) == set(RESULT_PARAMETERS), "a result parameter without a strategy"
    return st.sampled_from(sorted(by_name)).flatmap(lambda name: st.tuples(st.just(name), by_name[name]))


def search_parameter(corpus: Corpus, rtype: str) -> st.SearchStrategy[tuple[str, str]]:
    """One search parameter of ``rtype`` from the registry, with or without a modifier (its own,
    another type's, a target type, unknown), and a value for it."""
    modifiers = sorted({m for ms in MODIFIERS.values() for m in ms} | set(corpus.registry.served_types))

    def with_value(code: str) -> st.SearchStrategy[tuple[str, str]]:
        param = corpus.registry.get(rtype, code)
        own = list(param.modifiers) + list(param.target) if param else []
        modifier = st.sampled_from(["", *own]) | st.sampled_from(modifiers) | nasty_text
        name = modifier.map(lambda m: f"{code}:{m}" if m else code)
        value = values_for(corpus, rtype, code) | st.sampled_from(("true", "false"))
        return st.tuples(name, value)

    return (st.sampled_from(_codes(corpus, rtype)) | nasty_text).flatmap(with_value)


def query_strings(corpus: Corpus, rtype: str) -> st.SearchStrategy[str]:
    """A %-encoded query string: search and result parameters, repeated ones, raw bad escapes."""
    encoded = st.one_of(search_parameter(corpus, rtype), result_parameter(corpus, rtype)).map(lambda kv: f"{encode(kv[0])}={encode(kv[1])}")
    junk = st.sampled_from(RAW_ESCAPES).map(lambda e: f"_id={e}") | st.sampled_from(("", "=", "&", "x"))
    piece = st.one_of(encoded, encoded, encoded, encoded, junk)
    return st.lists(piece, min_size=1, max_size=3).map("&".join)


def fits(query: str, limit: int = LINE_LIMIT) -> str:
    """``query`` cut (at a ``&``, else before a ``%``) to ``limit`` characters at most."""
    while len(query) > limit:
        query = query.rpartition("&")[0] if "&" in query else query[:limit].rpartition("%")[0]
    return query


def url_query_strings(corpus: Corpus, rtype: str) -> st.SearchStrategy[str]:
    """:func:`query_strings` short enough for a URL or a header (see :data:`LINE_LIMIT`)."""
    return query_strings(corpus, rtype).map(fits)


# ---------------------------------------------------------------------------------------------
# headers and paths


def headers(corpus: Corpus) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    """Headers a client may send: Accept, Prefer, the conditionals, Content-Type, Authorization."""
    header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=20)
    etag = st.one_of(edge_integers.map(lambda n: f'W/"{n}"'), edge_integers.map(lambda n: f'"{n}"'),
                     st.sampled_from(("*", 'W/"1", W/"2"', "W/", '""')), header_text)
    def mostly(valid: tuple, junk) -> st.SearchStrategy[str]:  # a junk Accept would stop most requests at 406
        return st.one_of(st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(valid), junk)

    choices = {
        "Accept": mostly(("application/fhir+json", "application/json", "*/*", "application/fhir+xml",
                          "text/html", "application/json;q=0", ""), header_text),
        "Prefer": mostly(("return=minimal", "return=representation", "return=OperationOutcome",
                          "handling=lenient", "handling=strict", "respond-async", "return="), header_text),
        "If-Match": etag, "If-None-Match": etag,
        "If-None-Exist": url_query_strings(corpus, "ResearchStudy"),
        "Content-Type": mostly(("application/fhir+json", "application/json; charset=utf-8",
                                "application/x-www-form-urlencoded", "text/plain", "application/fhir+xml", ""),
                               header_text),
        "Authorization": mostly((f"Bearer {TOKEN}", f"bearer {TOKEN}", "Bearer wrong", "Bearer",
                                 f"Basic {TOKEN}", f"Bearer {TOKEN} x"), header_text),
    }
    return st.dictionaries(st.sampled_from(sorted(choices)), st.none(), max_size=4).flatmap(
        lambda chosen: st.tuples(*[st.tuples(st.just(k), choices[k]) for k in sorted(chosen)]))


def _segment(text: str) -> str:
    return fits(encode(text), LINE_LIMIT // 4)


def paths(corpus: Corpus) -> st.SearchStrategy[str]:
    """%-encoded paths: every interaction's shape on served and unknown types, ids from the data."""
    rtype = st.sampled_from(corpus.registry.served_types) | st.sampled_from(UNKNOWN_TYPES) | nasty_text.map(_segment)
    rid = st.sampled_from([i for ids in corpus.ids.values() for i in ids]) | nasty_text.map(_segment)
    vid = edge_integers.map(encode)
    shapes = st.one_of(
        st.sampled_from(("/metadata", "/", "/_history", "/$export", "/SearchParameter", "//", "/%2e%2e/etc")),
        rtype.map("/{}".format),
        st.tuples(rtype, rid).map(lambda t: "/{}/{}".format(*t)),
        st.tuples(rtype, rid).map(lambda t: "/{}/{}/_history".format(*t)),
        st.tuples(rtype, rid, vid).map(lambda t: "/{}/{}/_history/{}".format(*t)),
        st.tuples(rtype, st.sampled_from(("_history", "_search", "$validate", "$everything")))
        .map(lambda t: "/{}/{}".format(*t)),
        st.tuples(rtype, rid).map(lambda t: "/{}/{}/$validate".format(*t)),
        st.tuples(rtype, rid, nasty_text.map(_segment)).map(lambda t: "/{}/{}/{}".format(*t)),
    )
    return st.tuples(shapes, st.sampled_from(RAW_ESCAPES) | st.just("")).map("".join)


# ---------------------------------------------------------------------------------------------
# bodies


def _nest(value, depth: int, as_list: bool):
    for _ in range(depth):
        value = [value] if as_list else {"extension": value}
    return value


def _deep_text(depth: int) -> bytes:
    return b'{"resourceType":"ResearchStudy","id":"deep","status":"active","x":' + b"[" * depth + b"]" * depth + b"}"


hostile_values = st.one_of(
    json_values,
    st.sampled_from(LONG_LENGTHS).map(lambda n: "x" * n),
    st.sampled_from(("\x00", "a\x00b", "\ud800", "\u202e", 10**30, -(2**63) - 1, 1e308, True, None, [], {}))
    .map(copy.deepcopy),  # a shared [] or {} mutated later would make a cycle
    st.builds(_nest, json_values, st.sampled_from(DEPTHS[:-1]), st.booleans()),
)


def _pick(draw, options):
    """One of ``options`` (drawn by index: a strategy holding huge values would print them)."""
    return options[draw(st.integers(0, len(options) - 1))]


@st.composite
def mutated_resources(draw, corpus: Corpus, rtype: str | None = None) -> dict:
    """A loaded resource (of ``rtype`` when given), as is or with a few mutations: a value swapped
    for one of another JSON type, hostile text, deep nesting, a wrong or missing resourceType or id."""
    pool = [r for r in corpus.resources if rtype is None or r["resourceType"] == rtype] or corpus.resources
    resource = json.loads(json.dumps(pool[draw(st.integers(0, len(pool) - 1))]))
    for _ in range(draw(st.integers(0, 3))):
        node = resource
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):  # walk in, maybe
            key = _pick(draw, sorted(node) if isinstance(node, dict) else range(len(node)))
            if not isinstance(node[key], (dict, list)):
                break
            node = node[key]
        if isinstance(node, dict):
            key = draw(st.integers(0, 2))
            key = _pick(draw, sorted(node) or corpus.elements) if key == 0 else _pick(draw, corpus.elements) \
                if key == 1 else draw(nasty_text)
            if draw(st.integers(0, 4)) == 0:
                node.pop(key, None)
            else:
                node[key] = draw(hostile_values)
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(hostile_values)
    if draw(st.integers(0, 5)) == 0:
        resource["resourceType"] = draw(st.sampled_from(corpus.registry.served_types) | st.sampled_from(UNKNOWN_TYPES)
                                        | hostile_values)
    return resource


def dump(document) -> bytes:
    """``document`` as JSON bytes (Python's encoder: integers past 64 bits, lone surrogates kept)."""
    return json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")


raw_bodies = st.sampled_from((
    b"", b"{", b"null", b"[]", b"{}", b"\x00", b"\xff\xfe{}", "\ufeff{}".encode(), b'{"resourceType":1}',
    b'{"resourceType":"ResearchStudy","id":"dup","id":"dup2","status":"active"}', b"1e999",
    b'{"resourceType":"ResearchStudy","id":"big","status":"active","n":1e999}',
    b'{"resourceType":"ResearchStudy","status":"active","title":"a\\u0000b"}',
)) | st.sampled_from((5000, 100_000)).map(_deep_text) | st.just(OVERSIZE_BYTES).map(
    lambda n: b'{"resourceType":"ResearchStudy","title":"' + b"x" * n + b'"}')


@st.composite
def bundles(draw, corpus: Corpus) -> dict:
    """A batch or transaction Bundle (or something nearly one) whose entries' request fields have
    valid values, wrong JSON types and hostile text."""
    types = list(corpus.registry.served_types)
    entries = []
    for _ in range(draw(st.integers(0, 4))):
        resource = draw(mutated_resources(corpus))
        rtype = resource.get("resourceType") if isinstance(resource.get("resourceType"), str) else "ResearchStudy"
        url = st.one_of(
            st.integers(0, 1).map(lambda n: (f"{rtype}/{resource.get('id')}", rtype)[n]), st.sampled_from(types),
            query_strings(corpus, rtype).map(lambda q: f"{rtype}?{q}"),
            st.sampled_from(("", "/", "ResearchStudy/", "ResearchStudy/x/_history/1", "metadata", "Patient/1")),
            hostile_values)
        fields = {
            "method": st.sampled_from(("GET", "POST", "PUT", "DELETE", "PATCH", "get")) | hostile_values,
            "url": url,
            "ifMatch": st.sampled_from(('W/"1"', '"1"', "*")) | edge_integers.map(lambda n: f'W/"{n}"') | hostile_values,
            "ifNoneExist": query_strings(corpus, rtype) | hostile_values,
            "ifNoneMatch": st.just("*") | hostile_values,
            "ifModifiedSince": dates() | hostile_values,
        }
        chosen = draw(st.sets(st.sampled_from(sorted(fields))))
        request = {k: draw(fields[k]) for k in sorted(chosen | {"method", "url"}) if k in chosen or draw(st.booleans())}
        entry = {"request": request if draw(st.integers(0, 6)) else draw(hostile_values)}
        if draw(st.booleans()):
            entry["resource"] = resource
        if draw(st.booleans()):
            entry["fullUrl"] = draw(st.just("urn:uuid:0b8e1d2e-3b51-4b5e-9f3c-2c1f6a0e8d11") | nasty_text | hostile_values)
        entries.append(entry if draw(st.integers(0, 8)) else draw(hostile_values))
    bundle = {"resourceType": "Bundle",
              "type": draw(st.sampled_from(("transaction", "batch")) | hostile_values), "entry": entries}
    if draw(st.integers(0, 8)) == 0:
        bundle["entry"] = draw(hostile_values)
    return bundle


# ---------------------------------------------------------------------------------------------
# requests

AUTHORIZATIONS = st.sampled_from(((("Authorization", f"Bearer {TOKEN}"),),) * 4
                                 + ((), (("Authorization", "Bearer wrong"),), (("Authorization", TOKEN),)))
FHIR_CONTENT = (("Content-Type", "application/fhir+json"),)


def _with(headers: tuple, extra: tuple) -> tuple:
    names = {k for k, _ in headers}
    return tuple(headers) + tuple((k, v) for k, v in extra if k not in names)


def search_requests(corpus: Corpus) -> st.SearchStrategy[Request]:
    """Searches of every served type: ``GET /{type}?...`` or ``POST /{type}/_search`` with a form."""
    def for_type(rtype: str):
        get = st.builds(lambda q, h: Request("GET", f"/{rtype}?{q}", h), url_query_strings(corpus, rtype),
                        headers(corpus))
        post = st.builds(lambda q, h: Request("POST", f"/{rtype}/_search", _with(h, (
            ("Content-Type", "application/x-www-form-urlencoded"),)), q.encode()),
            query_strings(corpus, rtype), headers(corpus))
        return get | post
    return st.sampled_from(corpus.registry.served_types).flatmap(for_type)


def any_requests(corpus: Corpus) -> st.SearchStrategy[Request]:
    """Any method on any path, with a query string, any headers and any (or no) body."""
    body = st.none() | raw_bodies | mutated_resources(corpus).map(dump) | bundles(corpus).map(dump)
    query = st.just("") | url_query_strings(corpus, "ResearchStudy").map("?{}".format)
    return st.builds(lambda m, p, q, h, b: Request(m, p + fits(q, LINE_LIMIT - len(p)), h, b),
                     st.sampled_from(METHODS), paths(corpus), query, headers(corpus), body)


@st.composite
def write_requests(draw, corpus: Corpus) -> Request:
    """Create, update, delete and their conditional forms, on resources of the data (mutated)."""
    resource = draw(mutated_resources(corpus))
    rtype = resource.get("resourceType") if isinstance(resource.get("resourceType"), str) else "ResearchStudy"
    rid = resource.get("id") if isinstance(resource.get("id"), str) else "x"
    method, target = draw(st.sampled_from((
        ("PUT", f"/{encode(rtype)}/{encode(rid)}"), ("POST", f"/{encode(rtype)}"),
        ("DELETE", f"/{encode(rtype)}/{encode(rid)}"), ("PUT", None), ("DELETE", None))))
    if target is None:
        target = f"/{encode(rtype)}?{draw(url_query_strings(corpus, rtype))}"[:LINE_LIMIT]
    body = None if method == "DELETE" else dump(resource) if draw(st.integers(0, 3)) else draw(raw_bodies)
    extra = draw(headers(corpus))
    return Request(method, target, _with(_with(draw(AUTHORIZATIONS), extra), FHIR_CONTENT), body)


def bundle_requests(corpus: Corpus) -> st.SearchStrategy[Request]:
    """``POST /`` with a batch or transaction Bundle (or a body that is nearly one)."""
    body = bundles(corpus).map(dump) | raw_bodies
    return st.builds(lambda b, a, h: Request("POST", "/", _with(_with(a, h), FHIR_CONTENT), b),
                     body, AUTHORIZATIONS, headers(corpus).map(lambda h: tuple(x for x in h if x[0] == "Prefer")))


# ---------------------------------------------------------------------------------------------
# the edge sweep: every edge value in every place that takes one, once


def edge_sweep(corpus: Corpus) -> dict[str, list[Request]]:
    """Requests putting each edge value (dates, integers, cursors) in every place the registry and
    the routes take one: date and number parameters of every type, ``_count``/``_offset`` of search
    and history, version ids, ``If-Match``/``If-None-Match``, a Bundle entry's ``ifMatch``."""
    registry, auth = corpus.registry, (("Authorization", f"Bearer {TOKEN}"),) + FHIR_CONTENT
    first = {t: ids[0] for t, ids in corpus.ids.items()}
    resource = {r["resourceType"]: r for r in corpus.resources}
    dates_, numbers_, integers, places = [], [], [], []
    for rtype in registry.served_types:
        for code, param in sorted(registry.params(rtype).items()):
            if param.type == "date":
                dates_ += [Request("GET", f"/{rtype}?{code}={encode(PREFIXES[n % len(PREFIXES)] + d)}")
                           for n, d in enumerate(EDGE_DATES)] + [Request("GET", f"/{rtype}?{code}={encode(d)}")
                                                                  for d in EDGE_DATES]
            elif param.type == "number":
                numbers_ += [Request("GET", f"/{rtype}?{code}={encode(p + n)}") for n in EDGE_INTEGERS
                             for p in ("", "gt")]
        places += [f"/{rtype}?_count={{}}", f"/{rtype}?_offset={{}}", f"/{rtype}/_history?_count={{}}",
                   f"/{rtype}/_history?_offset={{}}"]
    places += ["/_history?_count={}", "/_history?_offset={}", "/_history?_since={}"]
    for rtype, rid in sorted(first.items()):
        places += [f"/{rtype}/{rid}/_history/{{}}", f"/{rtype}/{rid}/_history?_count={{}}"]
    integers += [Request("GET", place.format(encode(n))) for place in places for n in EDGE_INTEGERS]
    for rtype, rid in sorted(first.items()):
        for n in EDGE_INTEGERS:
            etag = f'W/"{n}"'
            integers += [Request("GET", f"/{rtype}/{rid}", (("If-None-Match", etag),)),
                         Request("PUT", f"/{rtype}/{rid}", auth + (("If-Match", etag),), dump(resource[rtype])),
                         Request("DELETE", f"/{rtype}/{rid}", auth + (("If-Match", etag),))]
    study = first["ResearchStudy"]
    entry_request = {"ifMatch": {"method": "PUT", "url": f"ResearchStudy/{study}"},  # where each field is read
                     "ifNoneExist": {"method": "POST", "url": "ResearchStudy"}}
    bundles_ = [Request("POST", "/", auth, dump({"resourceType": "Bundle", "type": kind, "entry": [
        {"resource": resource["ResearchStudy"], "request": {**entry_request[field], field: value}}]}))
        for kind in ("batch", "transaction") for field in entry_request
        for value in (*[f'W/"{n}"' for n in EDGE_INTEGERS], 1, 2**70, True, None, [], {}, ["W/\"1\""])]
    cursors_ = [Request("GET", f"/ResearchStudy?{name}={_b64(value)}") for name in ("_cursor", "_before")
                for value in ([True], ["x"], [None], [1e308], [[1]], [{"a": 1}], [2**70], ["x", 2**63], [], {},
                              [1, 2, 3, 4, 5, 6, 7], "x", 1)]
    return {"dates": dates_, "numbers": numbers_, "integers": integers, "bundle fields": bundles_,
            "cursors": cursors_}
