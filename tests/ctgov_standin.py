"""A local stand-in for the ClinicalTrials.gov API v2 (/studies, /studies/{nctId}, /version), for tests.

There is no internet here, so tests of ``fetch``/``sync`` talk to this over real HTTP. It follows the
OpenAPI description (shared/reference/ctg-oas-v2.yaml) and answers 400 for what it does not implement,
so a client never gets a silently wrong answer.

Paging: a first page takes a snapshot of the matching NCT ids in answer order and keeps it under a
number; ``nextPageToken`` is base64url JSON of {snapshot, offset, hash of the parameters except
countTotal/pageSize/pageToken}. Later pages take ids from the snapshot and records as they are now: a
study updated meanwhile keeps its place with its new content, a removed one is skipped (a shorter page;
"A page may have empty studies array"), one added meanwhile is not in this paging (a sync finds it by
LastUpdatePostDate). Text search is a simplified Essie (``_Parser``): no ranking, stemming or synonyms,
so ``sort=@relevance`` keeps the default order, by NCT id.
"""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import math
import os
import random
import re
import socket
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qsl

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server

API_VERSION, DEFAULT_TIMESTAMP = "2.0.3", "2026-11-30T08:00:00"
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_SNAPSHOTS = 10, 1000, 512
STATUSES = ("ACTIVE_NOT_RECRUITING", "COMPLETED", "ENROLLING_BY_INVITATION", "NOT_YET_RECRUITING",
            "RECRUITING", "SUSPENDED", "TERMINATED", "WITHDRAWN", "AVAILABLE", "NO_LONGER_AVAILABLE",
            "TEMPORARILY_NOT_AVAILABLE", "APPROVED_FOR_MARKETING", "WITHHELD", "UNKNOWN")
REPLICA_STATUSES = ("RECRUITING", "NOT_YET_RECRUITING", "ACTIVE_NOT_RECRUITING", "ENROLLING_BY_INVITATION",
                    "TERMINATED", "SUSPENDED", "WITHDRAWN", "UNKNOWN")   # those of non-expanded-access studies
REPLICA_STATUS_SHARE, REPLICA_YEARS, GEO_JITTER_DEG = 0.35, 3, 0.02
NCT_RE = re.compile(r"^(NCT|nct)\d{8}$")
NCT_ONLY_RE = re.compile(r"^[\s,]*(?:(?:NCT|nct)\d{8}[\s,]*)+$")
GEO_RE = re.compile(r"^distance\((-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?),(\d+(?:\.\d+)?)(km|mi)?\)$")
EARTH_RADIUS = {"mi": 3958.8, "km": 6371.0}   # a distance without a unit is taken as miles
SEP = "\x1f"   # between the texts of a search area
TIMESTAMP_RE, DATE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$"), re.compile(r"^\d{4}(-\d\d){0,2}$")

# Piece name (as on the Data Structure page), kind, path under protocolSection ("/" = from the top).
_FIELD_TABLE = """
NCTId enum identificationModule.nctId | Acronym text identificationModule.acronym
BriefTitle text identificationModule.briefTitle | OfficialTitle text identificationModule.officialTitle
OrgStudyId text identificationModule.orgStudyIdInfo.id | OverallStatus enum statusModule.overallStatus
StartDate date statusModule.startDateStruct.date | CompletionDate date statusModule.completionDateStruct.date
PrimaryCompletionDate date statusModule.primaryCompletionDateStruct.date
StudyFirstSubmitDate date statusModule.studyFirstSubmitDate | StatusVerifiedDate date statusModule.statusVerifiedDate
StudyFirstPostDate date statusModule.studyFirstPostDateStruct.date
ResultsFirstPostDate date statusModule.resultsFirstPostDateStruct.date
LastUpdateSubmitDate date statusModule.lastUpdateSubmitDate
LastUpdatePostDate date statusModule.lastUpdatePostDateStruct.date
LeadSponsorName text sponsorCollaboratorsModule.leadSponsor.name | Condition text conditionsModule.conditions
Keyword text conditionsModule.keywords | StudyType enum designModule.studyType | Phase enum designModule.phases
EnrollmentCount number designModule.enrollmentInfo.count | HasResults bool /hasResults
InterventionName text armsInterventionsModule.interventions.name
LocationFacility text contactsLocationsModule.locations.facility
LocationCity text contactsLocationsModule.locations.city | LocationState text contactsLocationsModule.locations.state
LocationZip text contactsLocationsModule.locations.zip | LocationCountry text contactsLocationsModule.locations.country
LocationGeoPoint geo contactsLocationsModule.locations.geoPoint
ConditionMeshTerm text /derivedSection.conditionBrowseModule.meshes.term
ConditionAncestorTerm text /derivedSection.conditionBrowseModule.ancestors.term
"""
FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    name: (kind, tuple((path[1:] if path[0] == "/" else "protocolSection." + path).split(".")))
    for name, kind, path in (item.split() for item in re.split(r"[|\n]", _FIELD_TABLE) if item.strip())}
# Search areas as the Search Areas page lists their fields; BasicSearch is every text of the record here.
AREAS = {"ConditionSearch": ("Condition", "BriefTitle", "OfficialTitle", "ConditionMeshTerm",
                             "ConditionAncestorTerm", "Keyword", "NCTId"),
         "TitleSearch": ("Acronym", "BriefTitle", "OfficialTitle"),
         "LocationSearch": ("LocationCity", "LocationState", "LocationCountry", "LocationFacility", "LocationZip")}
QUERY_AREAS = {"query.cond": "ConditionSearch", "query.term": "BasicSearch", "query.locn": "LocationSearch",
               "query.titles": "TitleSearch"}
FILTERS = ("overallStatus", "geo", "ids", "advanced")   # each as filter.* and postFilter.* (the same effect)
PAGING_PARAMS = {"countTotal", "pageSize", "pageToken"}   # the parameters that may change between pages
STUDIES_PARAMS = ({"format", "fields", "sort"} | PAGING_PARAMS | set(QUERY_AREAS)
                  | {f"{p}.{f}" for p in ("filter", "postFilter") for f in FILTERS})
UNSUPPORTED = {"query.intr", "query.outc", "query.spons", "query.lead", "query.id", "query.patient",
               "filter.synonyms", "postFilter.synonyms", "aggFilters", "geoDecay"}   # documented, not here
_NAMES = {n.lower(): n for n in (*FIELDS, *AREAS, "BasicSearch")}


class ApiError(Exception):
    """An answer other than 200: ``status`` and the text/plain ``message``, as the API gives them."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def _values(node, path: tuple[str, ...]) -> list:
    """Every value at ``path`` in ``node``, walking through the lists on the way."""
    if isinstance(node, list):
        return [v for item in node for v in _values(item, path)]
    if not path:
        return [] if node is None else [node]
    return _values(node.get(path[0]), path[1:]) if isinstance(node, dict) else []


_WORD_BYTES = bytes(c if chr(c).isalnum() or c >= 128 or c == 0x1f else 32 for c in range(256))
_ESCAPE_RE, _KEY_RE = re.compile(rb"\\(?:u[0-9a-fA-F]{4}|.)"), re.compile(rb'"[A-Za-z0-9@]*":')


def _words(data: bytes) -> bytes:
    """UTF-8 text as its words, lower case, one space apart and around; SEP stays as a word of its own.

    A term (or phrase) is in a text when its words are; bytes.translate and split keep this fast.
    """
    return b" " + b" ".join(data.decode().lower().encode().translate(_WORD_BYTES).split()) + b" "


def _joined(texts) -> bytes:
    """The words of many texts, SEP between them so that no phrase spans two."""
    return _words(f" {SEP} ".join(texts).encode())


def _all_words(blob: bytes) -> bytes:
    """The words of every string value of a JSON document (not its keys), SEP between them."""
    return _words(_KEY_RE.sub(b" ", _ESCAPE_RE.sub(b" ", blob)).replace(b'"', f" {SEP} ".encode()))


class _Entry:
    """One stored study: its JSON, and the values searching, filtering and sorting read (immutable)."""

    def __init__(self, study: dict):   # keeps no reference into ``study``
        self.blob = orjson.dumps(study)
        self.nct = study["protocolSection"]["identificationModule"]["nctId"]
        self.values = {f: _values(study, path) for f, (kind, path) in FIELDS.items() if kind not in ("text", "geo")}
        self._words = {f: _joined(map(str, _values(study, path))) for f, (kind, path) in FIELDS.items()
                       if kind == "text"}
        self.geos = [(g["lat"], g["lon"]) for g in _values(study, FIELDS["LocationGeoPoint"][1]) if "lat" in g]

    def words(self, area: str) -> bytes:
        """The words of a text field or search area (those of BasicSearch worked out on first use)."""
        if area not in self._words:
            self._words[area] = _all_words(self.blob) if area == "BasicSearch" else SEP.encode().join(
                self._words.get(f) or _joined(map(str, self.values[f])) for f in AREAS[area])
        return self._words[area]


def _samples_dir(path: str | os.PathLike | None) -> Path:
    if path is not None:
        return Path(path)
    if os.environ.get("FHIRSTUDY_PEER_DIR"):
        return Path(os.environ["FHIRSTUDY_PEER_DIR"]).parent / "ctgov-samples"
    return Path(__file__).resolve().parents[2] / "shared" / "ctgov-samples"


def _shift(date: str, days: int) -> str:
    """An ISO date (yyyy, yyyy-MM or yyyy-MM-dd) moved by ``days``, keeping its precision."""
    parts = date.split("-")
    return (dt.date(*map(int, parts + ["1"] * (3 - len(parts)))) + dt.timedelta(days=days)).isoformat()[:len(date)]


def _replica(blob: bytes, old: str, new: str, data_date: dt.date, rng: random.Random) -> dict:
    """A copy of a sample: ``new`` for ``old`` in every text, dates moved, sites jittered, maybe a new status."""
    study = orjson.loads(blob.replace(old.encode(), new.encode()))
    status = study["protocolSection"]["statusModule"]
    last = dt.date.fromisoformat(status["lastUpdatePostDateStruct"]["date"])
    days = (data_date - dt.timedelta(days=rng.randint(1, 365 * REPLICA_YEARS)) - last).days
    for key, value in status.items():   # one shift for all dates keeps their order and gaps
        if key.endswith("Date") and isinstance(value, str):
            status[key] = _shift(value, days)
        elif key.endswith("DateStruct") and "date" in value:
            value["date"] = _shift(value["date"], days)
    if rng.random() < REPLICA_STATUS_SHARE:
        status["overallStatus"] = rng.choice(REPLICA_STATUSES)
    for site in study["protocolSection"].get("contactsLocationsModule", {}).get("locations", []):
        if "geoPoint" in site:
            site["geoPoint"] = {k: round(v + rng.uniform(-GEO_JITTER_DEG, GEO_JITTER_DEG), 5)
                                for k, v in site["geoPoint"].items()}
    return study


class Registry:
    """The stand-in's studies (API v2 study objects); a test may change them while they are served.

    Mutations stamp LastUpdatePostDate with the date of ``data_timestamp`` but never move the
    timestamp (the data version); a test calls ``advance`` for that. ``requests`` logs every request
    received, faults included, as (path, query parameters).
    """

    def __init__(self, studies: list[dict], data_timestamp: str = DEFAULT_TIMESTAMP):
        self._lock, self._entries = threading.RLock(), {}
        self.requests: list[tuple[str, dict]] = []
        self.advance(data_timestamp)
        for study in studies:
            self.add(study)

    @classmethod
    def replicated(cls, n: int, seed: int = 0, samples: str | os.PathLike | None = None,
                   data_timestamp: str = DEFAULT_TIMESTAMP) -> Registry:
        """``n`` deterministic replicas (not the originals) of the JSON samples, ids NCT9xxxxxxx.

        Replica i copies sample i mod (number of samples); its new id replaces the old in every text;
        its statusModule dates move together so that LastUpdatePostDate falls in the REPLICA_YEARS
        before the data date (never on it); its sites move by up to GEO_JITTER_DEG; a share of
        REPLICA_STATUS_SHARE gets another overallStatus.
        """
        files = sorted(_samples_dir(samples).glob("*.json"))
        if not files or not 0 <= n < 10**7:
            raise ValueError(f"need JSON samples in {_samples_dir(samples)} and 0 <= n < 10**7")
        bases = [orjson.loads(f.read_bytes()) for f in files]
        bases = [(b["protocolSection"]["identificationModule"]["nctId"], orjson.dumps(b)) for b in bases]
        data_date, registry = dt.date.fromisoformat(data_timestamp[:10]), cls([], data_timestamp)
        for i in range(n):   # one parsed replica at a time: the registry keeps JSON bytes
            old, blob = bases[i % len(bases)]
            new = f"NCT9{(seed * 100_000 + i) % 10**7:07d}"
            registry.add(_replica(blob, old, new, data_date, random.Random(f"{seed}:{i}")))
        return registry

    @property
    def data_timestamp(self) -> str:
        return self._timestamp

    def advance(self, timestamp: str) -> None:
        """Set the data version, the ``dataTimestamp`` of /version (yyyy-MM-ddTHH:mm:ss)."""
        if not TIMESTAMP_RE.match(timestamp):
            raise ValueError(f"not a yyyy-MM-ddTHH:mm:ss timestamp: {timestamp!r}")
        self._timestamp = timestamp

    def get(self, nct: str) -> dict | None:
        """A copy of the study, or None."""
        entry = self._entries.get(nct.upper())
        return orjson.loads(entry.blob) if entry else None

    def ids(self) -> list[str]:
        """Every NCT id, sorted."""
        with self._lock:
            return sorted(self._entries)

    def add(self, study: dict) -> None:
        """Store a new study as it is now (ValueError if its id is malformed or taken)."""
        entry = _Entry(study)
        with self._lock:
            if not NCT_RE.match(entry.nct) or entry.nct in self._entries:
                raise ValueError(f"{entry.nct!r} is malformed or taken (use update)")
            self._entries[entry.nct] = entry

    def update(self, nct: str, fn: Callable[[dict], None]) -> None:
        """Let ``fn`` change a copy of the study, then stamp it updated on the data date (KeyError if absent)."""
        with self._lock:
            study = self.get(nct)
            if study is None:
                raise KeyError(nct)
            fn(study)
            status, today = study["protocolSection"]["statusModule"], self._timestamp[:10]
            status.update(lastUpdateSubmitDate=today, lastUpdatePostDateStruct={"date": today, "type": "ACTUAL"})
            entry = _Entry(study)
            if entry.nct != nct:
                raise ValueError("update must not change the NCT id")
            self._entries[nct] = entry

    def withdraw(self, nct: str) -> None:
        """Mark the study WITHDRAWN (an update)."""
        self.update(nct, lambda s: s["protocolSection"]["statusModule"].update(overallStatus="WITHDRAWN"))

    def remove(self, nct: str) -> None:
        """Delete the study (KeyError if absent)."""
        with self._lock:
            del self._entries[nct]

    def _snapshot(self) -> list[_Entry]:
        with self._lock:
            return list(self._entries.values())

    def _log(self, path: str, params: dict) -> None:
        with self._lock:
            self.requests.append((path, params))

    def _blobs(self, ids: list[str], paths: list[tuple[str, ...]] | None) -> list[bytes]:
        """The JSON of those studies still here, cut to ``paths`` if given."""
        with self._lock:
            blobs = [e.blob for e in map(self._entries.get, ids) if e is not None]
        return blobs if paths is None else [orjson.dumps(_project(orjson.loads(b), paths)) for b in blobs]


Predicate = Callable[[_Entry], bool]
_TOKEN_RE = re.compile(r'\s*(?:(?P<p>[()])|"(?P<q>[^"]*)"|AREA\[(?P<a>[^\]]*)\]|RANGE\[(?P<r>[^\]]*)\]'
                       r'|(?P<w>[^\s()"]+))')


class _Parser:
    """A simplified Essie expression compiled to a predicate over studies.

    Words and "phrases" match whole words, ignoring case and punctuation, in the parameter's search
    area; terms side by side (or with AND) must all match; OR, NOT and parentheses combine them.
    AREA[name] before a term or group searches another area or a field: an enum, number or boolean
    field must equal the term, a date field begin with it. AREA[date or number field]RANGE[low,high]
    is inclusive, MIN and MAX leave an end open. Anything else (SEARCH[...], unbalanced parentheses or
    quotes, an unknown area) is a 400.
    """

    def __init__(self, text: str, area: str):
        self.area, self.pos, self.tokens, text, at = area, 0, [], text.strip(), 0
        while at < len(text):
            m = _TOKEN_RE.match(text, at)
            if m is None or "[" in (m.group("w") or "") or "]" in (m.group("w") or ""):
                raise _bad(f"cannot parse the query at {text[at:at + 20]!r}")
            self.tokens.append((m.lastgroup, m.group(m.lastgroup)))
            at = m.end()

    def parse(self) -> Predicate:
        pred = self._or(self.area)
        if self.pos < len(self.tokens):
            raise _bad(f"cannot parse the query at {self.tokens[self.pos][1]!r}")
        return pred

    def _peek(self) -> tuple[str | None, str | None]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def _take(self) -> tuple[str | None, str | None]:
        self.pos += 1
        return self.tokens[self.pos - 1] if self.pos <= len(self.tokens) else (None, None)

    def _or(self, area: str) -> Predicate:
        preds = [self._and(area)]
        while self._peek() == ("w", "OR") and self._take():
            preds.append(self._and(area))
        return preds[0] if len(preds) == 1 else (lambda e: any(p(e) for p in preds))

    def _and(self, area: str) -> Predicate:
        preds = [self._not(area)]
        while self._peek()[0] is not None and self._peek() not in (("p", ")"), ("w", "OR")):
            if self._peek() == ("w", "AND"):
                self._take()
            preds.append(self._not(area))
        return preds[0] if len(preds) == 1 else (lambda e: all(p(e) for p in preds))

    def _not(self, area: str) -> Predicate:
        if self._peek() == ("w", "NOT") and self._take():
            pred = self._not(area)
            return lambda e: not pred(e)
        kind, value = self._take()
        if (kind, value) == ("p", "("):
            pred = self._or(area)
            if self._take() != ("p", ")"):
                raise _bad("missing ) in the query")
            return pred
        if kind == "a":
            if value.strip().lower() not in _NAMES:
                raise _bad(f"unknown search area or field {value!r}")
            name = _NAMES[value.strip().lower()]
            return _range(name, self._take()[1]) if self._peek()[0] == "r" else self._not(name)
        if kind == "q" or (kind == "w" and value not in ("AND", "OR", "NOT")):
            return _term(area, value)
        raise _bad(f"cannot parse the query at {value!r}" if value else "the query ends too early")


def _term(area: str, value: str) -> Predicate:
    kind = FIELDS[area][0] if area in FIELDS else "text"
    if kind == "text":
        needle = _words(value.encode())
        return (lambda e: needle in e.words(area)) if needle.strip() else (lambda e: True)
    if kind == "geo":
        raise _bad(f"{area} cannot be searched; use filter.geo")
    if kind == "date":
        return lambda e: any(v.startswith(value) for v in e.values[area])
    return lambda e: any(str(v).lower() == value.lower() for v in e.values[area])


def _range(field: str, spec: str) -> Predicate:
    kind, bounds = FIELDS.get(field, ("text",))[0], [b.strip() for b in spec.split(",")]
    valid = DATE_RE.match if kind == "date" else re.compile(r"^-?\d+(\.\d+)?$").match
    if kind not in ("date", "number") or len(bounds) != 2 or not all(b in ("MIN", "MAX") or valid(b) for b in bounds):
        raise _bad(f"RANGE[{spec}] needs a date or number field and two bounds (values, MIN or MAX)")
    if kind == "date":   # a partial date is its first day, or as an upper bound its last
        key = lambda v: (v + "-01-01")[:10]   # noqa: E731
        low, high = key(bounds[0]), bounds[1] + {4: "-12-31", 7: "-31"}.get(len(bounds[1]), "")
    else:
        key, low, high = float, *(float(b) if b not in ("MIN", "MAX") else None for b in bounds)
    low, high = (None if bounds[0] == "MIN" else low), (None if bounds[1] == "MAX" else high)
    return lambda e: any((low is None or key(v) >= low) and (high is None or key(v) <= high)
                         for v in e.values[field])


def _list(value: str) -> list[str]:
    return [item.strip() for item in re.split(r"[,|]", value)]


def _distance(lat1: float, lon1: float, lat2: float, lon2: float, radius: float) -> float:
    """Great-circle (haversine) distance in the unit of ``radius``."""
    p1, p2, dp, dl = map(math.radians, (lat1, lat2, lat2 - lat1, lon2 - lon1))
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(h))


def _filter(name: str, value: str) -> Predicate:
    """One filter.* (or postFilter.*) parameter as a predicate; 400 for a value the OpenAPI rejects."""
    if name == "overallStatus":
        wanted = set(_list(value))
        if wanted - set(STATUSES):
            raise _bad(f"filter.overallStatus: {sorted(wanted - set(STATUSES))} are not in {list(STATUSES)}")
        return lambda e: bool(wanted.intersection(e.values["OverallStatus"]))
    if name == "ids":
        if not all(NCT_RE.match(i) for i in _list(value)):
            raise _bad(f"filter.ids: every item must match ^(NCT|nct)\\d{{8}}$: {value!r}")
        wanted = {i.upper() for i in _list(value)}
        return lambda e: e.nct in wanted
    if name == "geo":
        m = GEO_RE.match(value)
        if m is None or abs(float(m[1])) > 90 or abs(float(m[2])) > 180:
            raise _bad(f"filter.geo must be distance(latitude,longitude,distance[km|mi]), not {value!r}")
        lat, lon, far, radius = float(m[1]), float(m[2]), float(m[3]), EARTH_RADIUS[m[4] or "mi"]
        return lambda e: any(_distance(lat, lon, a, b, radius) <= far for a, b in e.geos)
    return _Parser(value, "BasicSearch").parse()


def _search(args) -> Predicate:
    """All query.* and filter.* parameters ANDed; the filters are ignored when a query holds only NCT ids."""
    queries, filters, ids_only = [], [], False
    for param, area in QUERY_AREAS.items():
        if param in args and NCT_ONLY_RE.match(args[param]):
            wanted = {i.upper() for i in re.findall(r"(?:NCT|nct)\d{8}", args[param])}
            queries.append(lambda e, wanted=wanted: e.nct in wanted)
            ids_only = True
        elif param in args:
            queries.append(_Parser(args[param], area).parse())
    for prefix in ("filter", "postFilter"):
        filters += [_filter(name, args[f"{prefix}.{name}"]) for name in FILTERS if f"{prefix}.{name}" in args]
    preds = queries if ids_only else queries + filters
    return lambda e: all(p(e) for p in preds)


def _ordered(entries, sort: str | None) -> list[_Entry]:
    """By NCT id, then stably by the ``sort`` items from the last; studies missing a field go last."""
    items, entries = _list(sort) if sort else [], sorted(entries, key=lambda e: e.nct)
    for item in reversed(items):
        name, _, direction = item.partition(":")
        field = _NAMES.get(name.lower())
        if len(items) > 2 or direction not in ("", "asc", "desc"):
            raise _bad(f"sort: at most two items of field[:asc|:desc], not {sort!r}")
        if name == "@relevance":
            continue   # no ranking here: the default order
        if field not in FIELDS or FIELDS[field][0] not in ("date", "number"):
            raise _bad(f"sort: only date and numeric fields can be sorted, not {name!r}")
        desc = direction == "desc" if direction else FIELDS[field][0] == "date"
        have = sorted((e for e in entries if e.values[field]), key=lambda e: e.values[field][0], reverse=desc)
        entries = have + [e for e in entries if not e.values[field]]
    return entries


def _paths(value: str | None) -> list[tuple[str, ...]] | None:
    """The record paths the ``fields`` parameter names: pieces, areas, modules, sections or dotted paths."""
    paths = []
    for item in _list(value) if value is not None else []:
        name = _NAMES.get(item.lower())
        if name in FIELDS or name in AREAS:
            paths += [FIELDS[f][1] for f in AREAS.get(name, (name,))]
        elif re.match(r"^[a-zA-Z]+(\.[a-zA-Z]+)+$", item):
            paths.append(tuple(item.split(".")))
        elif re.match(r"^[A-Z][a-zA-Z]*(Module|Section)$", item):   # a module: of whichever section has it
            key = item[0].lower() + item[1:]
            paths.append(("*", key) if key.endswith("Module") else (key,))
        else:
            raise _bad(f"fields: unknown or unsupported field {item!r}")
    return paths if value is not None else None


def _project(node, paths: list[tuple[str, ...]]):
    """Only the parts of ``node`` at ``paths``, nested as in the record; empty parts are left out."""
    if any(not p for p in paths):
        return node
    if isinstance(node, list):
        return [v for v in (_project(item, paths) for item in node) if v not in (None, {}, [])]
    if not isinstance(node, dict):
        return None
    out = {}
    for key, value in node.items():
        rest = [p[1:] for p in paths if p[0] in (key, "*")]
        if rest and (part := _project(value, rest)) not in (None, {}, []):
            out[key] = part
    return out


class _Pager:
    """Answer snapshots (lists of NCT ids) by number, and the page tokens that point into them."""

    def __init__(self):
        self._lock, self._snapshots, self._last = threading.Lock(), OrderedDict(), 0

    def save(self, ids: list[str]) -> int:
        with self._lock:
            self._last += 1
            self._snapshots[self._last] = ids
            while len(self._snapshots) > MAX_SNAPSHOTS:
                self._snapshots.popitem(last=False)
            return self._last

    @staticmethod
    def token(snapshot: int, offset: int, params: str) -> str:
        return base64.urlsafe_b64encode(orjson.dumps({"s": snapshot, "o": offset, "h": params})).decode().rstrip("=")

    def resume(self, token: str, params: str) -> tuple[int, list[str], int]:
        """(snapshot, its ids, offset) of a token; 400 if it is garbled, unknown or for other parameters."""
        try:
            data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            snapshot, offset, hashed = data["s"], data["o"], data["h"]
            if not (type(snapshot) is int and type(offset) is int and offset >= 0 and isinstance(hashed, str)):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise _bad("malformed pageToken") from None
        if hashed != params:
            raise _bad("pageToken was issued for other parameters: each page needs those of the first page, "
                       "except countTotal, pageSize and pageToken")
        with self._lock:
            ids = self._snapshots.get(snapshot)
        if ids is None:
            raise _bad("pageToken is unknown or expired")
        return snapshot, ids, offset


def _check(args, allowed: set[str], other_formats: tuple[str, ...] = ()) -> None:
    """400 for unknown parameters, documented ones the stand-in lacks, and any format but json."""
    for key in args:
        if key in UNSUPPORTED or key not in allowed:
            raise _bad(f"{key} is not supported by the stand-in" if key in UNSUPPORTED else f"unknown parameter {key}")
    fmt = args.get("format", "json")
    if fmt != "json":
        raise _bad(f"format={fmt} is not supported by the stand-in" if fmt in other_formats else f"bad format {fmt!r}")


def _studies_page(registry: Registry, pager: _Pager, args) -> bytes:
    """The JSON of one /studies page."""
    _check(args, STUDIES_PARAMS, ("csv",))
    paths = _paths(args.get("fields"))
    params = hashlib.sha256(orjson.dumps(sorted((k, v) for k, v in args.items(multi=True)
                                                if k not in PAGING_PARAMS))).hexdigest()[:16]
    size, total = args.get("pageSize", "0"), args.get("countTotal", "false").lower()
    if not size.isdigit() or total not in ("true", "false"):
        raise _bad("pageSize must be an integer >= 0, countTotal true or false")
    size = min(int(size) or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if "pageToken" in args:
        (snapshot, ids, offset), total = pager.resume(args["pageToken"], params), "false"
    else:
        match = _search(args)
        ids, snapshot, offset = [e.nct for e in _ordered(filter(match, registry._snapshot()), args.get("sort"))], 0, 0
    body: dict = {"totalCount": len(ids)} if total == "true" else {}
    body["studies"] = [orjson.Fragment(b) for b in registry._blobs(ids[offset:offset + size], paths)]
    if offset + size < len(ids):
        body["nextPageToken"] = pager.token(snapshot or pager.save(ids), offset + size, params)
    return orjson.dumps(body)


def _faults(app, registry: Registry, throttle_every, retry_after, drop_every, drop_mode):
    """WSGI middleware: logs every request, then answers every n-th with a 429 or a dropped connection."""
    counter, lock = iter(range(1, 2**63)), threading.Lock()

    def middleware(environ, start_response):
        with lock:
            n = next(counter)
        registry._log(environ["PATH_INFO"], dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)))
        if throttle_every and n % throttle_every == 0:
            start_response("429 Too Many Requests", [("Content-Type", "text/plain"), ("Retry-After", str(retry_after))])
            return [b"Too many requests (stand-in throttle): retry after Retry-After seconds"]
        if drop_every and n % drop_every == 0:
            if drop_mode == "reset" and "werkzeug.socket" in environ:
                environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)   # closed before any byte of an answer
                start_response("500 Dropped", [("Content-Length", "0")])
                return []
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "1000")])
            return [b'{"studies": [']   # the body stops far short of its Content-Length
        return app(environ, start_response)
    return middleware


def create_app(registry: Registry, *, throttle_every: int | None = None, retry_after: int = 1,
               drop_every: int | None = None, drop_mode: str = "reset") -> Flask:
    """The stand-in over ``registry`` as a Flask app; paths as under https://clinicaltrials.gov/api/v2.

    Faults count all requests: each ``throttle_every``-th answers 429 with ``Retry-After: retry_after``;
    each ``drop_every``-th drops the connection, before any answer (``drop_mode="reset"``: requests
    raises ConnectionError) or after headers promising more body than comes (``"truncate"``: requests
    raises ChunkedEncodingError). A request due for both is throttled.
    """
    if drop_mode not in ("reset", "truncate"):
        raise ValueError(f"drop_mode must be reset or truncate, not {drop_mode!r}")
    app, pager = Flask(__name__), _Pager()

    @app.get("/studies")
    def studies():
        return Response(_studies_page(registry, pager, request.args), mimetype="application/json")

    @app.get("/studies/<nct_id>")
    def study(nct_id: str):
        _check(request.args, {"format", "fields"}, ("csv", "json.zip", "fhir.json"))
        if not NCT_RE.match(nct_id):
            raise _bad(f"/studies/{nct_id} is not supported by the stand-in" if nct_id.isalpha()
                       else f"malformed NCT number {nct_id!r}")
        blobs = registry._blobs([nct_id.upper()], _paths(request.args.get("fields")))
        if not blobs:
            raise ApiError(404, f"Study {nct_id.upper()} not found")
        return Response(blobs[0], mimetype="application/json")

    @app.get("/version")
    def version():
        _check(request.args, set())
        return {"apiVersion": API_VERSION, "dataTimestamp": registry.data_timestamp}

    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return Response(error.message, error.status, mimetype="text/plain")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return Response(error.description or error.name, error.code, mimetype="text/plain")

    app.wsgi_app = _faults(app.wsgi_app, registry, throttle_every, retry_after, drop_every, drop_mode)
    return app


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:   # no access-log line per request in the test output
        pass


@contextlib.contextmanager
def serve(registry: Registry, **faults) -> Iterator[str]:
    """Serve ``create_app(registry, **faults)`` on a free port of 127.0.0.1 and yield its base URL."""
    server = make_server("127.0.0.1", 0, create_app(registry, **faults), threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="ctgov-standin", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
