"""What a user asks ClinicalTrials.gov for, as one ``Query``: from ``fetch``'s options or a sync
query file (TOML), checked here so that a mistake is one line before any request is sent.

    Query(condition="breast cancer", status=("RECRUITING",), near="42.36,-71.06,50mi").params()
    -> {"query.cond": "breast cancer", "filter.overallStatus": "RECRUITING",
        "filter.geo": "distance(42.36,-71.06,50mi)"}

A query file holds one query (its keys at the top) or several (``[[query]]`` tables, each with a
``name``); keys are the option names: ``condition``, ``term``, ``location``, ``title``,
``intervention``, ``outcome``, ``sponsor`` (the API's text queries, ``mappings/ctgov-api.json``),
``status`` (a list or a comma-separated string), ``near`` (``lat,lon,distance`` with ``mi`` or
``km``), ``nct`` (NCT ids), ``advanced`` (an Essie expression for ``filter.advanced``), ``sort`` (the API's
``sort``: a date or numeric field, ``:asc`` or ``:desc``).
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import orjson

from .. import mappings
from ..errors import FhirStudyError

_TABLE = mappings.load("ctgov-api.json")
STATUSES: tuple[str, ...] = tuple(_TABLE["statuses"])
TEXT_QUERIES: dict[str, str] = _TABLE["text_queries"]
LAST_UPDATE = _TABLE["last_update_field"]
_NEAR = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*(mi|km)?\s*$")
_NCT = re.compile(r"^NCT\d{8}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SORT = re.compile(r"^(?:[A-Za-z][A-Za-z0-9.-]*|@relevance)(?::(?:asc|desc))?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_IDS = 1000


class QueryError(FhirStudyError):
    """A query that cannot be sent as it is (the message says which option and why)."""


@dataclass(frozen=True)
class Query:
    """One question to the registry; ``name`` identifies it in a sync's state."""

    name: str = "default"
    condition: str | None = None
    term: str | None = None
    location: str | None = None
    title: str | None = None
    intervention: str | None = None
    outcome: str | None = None
    sponsor: str | None = None
    status: tuple[str, ...] = ()
    near: str | None = None
    nct: tuple[str, ...] = ()
    advanced: str | None = None
    sort: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise QueryError(f"query name {self.name!r}: letters, digits, '.', '_' and '-' only (at most 100)")
        for key in TEXT_QUERIES:
            value = getattr(self, key)
            if value is not None and not value.strip():
                raise QueryError(f"--{key} is empty")
        bad = [s for s in self.status if s not in STATUSES]
        if bad:
            raise QueryError(f"--status {bad[0]!r} is not a ClinicalTrials.gov status; one of {', '.join(STATUSES)}")
        bad = [n for n in self.nct if not _NCT.match(n)]
        if bad:
            raise QueryError(f"--nct {bad[0]!r} is not an NCT number (NCT and 8 digits)")
        if len(self.nct) > MAX_IDS:
            raise QueryError(f"--nct names {len(self.nct)} studies; at most {MAX_IDS} in one query")
        if self.near is not None:
            geo(self.near)
        if self.sort is not None and not all(_SORT.match(s.strip()) for s in self.sort.split(",")):
            raise QueryError(f"--sort {self.sort!r}: a date or numeric field with :asc or :desc (at most two), "
                             "e.g. LastUpdatePostDate:desc")

    def params(self, updated_since: str | None = None) -> dict[str, str]:
        """The API's parameters for this query; ``updated_since`` (YYYY-MM-DD) adds a
        ``LastUpdatePostDate`` range to ``filter.advanced``."""
        out = {api: getattr(self, key) for key, api in TEXT_QUERIES.items() if getattr(self, key) is not None}
        if self.status:
            out["filter.overallStatus"] = ",".join(self.status)
        if self.near is not None:
            out["filter.geo"] = geo(self.near)
        if self.nct:
            out["filter.ids"] = ",".join(self.nct)
        clauses = [f"({self.advanced})"] if self.advanced else []
        if updated_since is not None:
            if not _DATE.match(updated_since):
                raise QueryError(f"updated since {updated_since!r}: expected YYYY-MM-DD")
            clauses.append(f"AREA[{LAST_UPDATE}]RANGE[{updated_since},MAX]")
        if clauses:
            out["filter.advanced"] = " AND ".join(clauses)
        if self.sort:
            out["sort"] = ",".join(s.strip() for s in self.sort.split(","))
        return out

    def key(self) -> str:
        """The query's parameters as canonical JSON: a sync's state belongs to this, not to the name."""
        return orjson.dumps(self.params(), option=orjson.OPT_SORT_KEYS).decode()

    def describe(self) -> str:
        """One line for summaries: ``condition="breast cancer" status=RECRUITING``."""
        parts = [f"{f.name}={_shown(getattr(self, f.name))}" for f in dataclasses.fields(self)
                 if f.name != "name" and getattr(self, f.name) not in (None, ())]
        return " ".join(parts) or "the whole registry"


def geo(near: str) -> str:
    """``lat,lon,distance[mi|km]`` -> the API's ``distance(lat,lon,distance)``; QueryError when it
    is not that, or the point is not on Earth."""
    match = _NEAR.match(near)
    if not match:
        raise QueryError(f"--near {near!r}: expected LAT,LON,DISTANCE with mi or km, e.g. 42.36,-71.06,50mi")
    lat, lon, distance, unit = match.groups()
    if not (-90 <= float(lat) <= 90 and -180 <= float(lon) <= 180):
        raise QueryError(f"--near {near!r}: latitude must be within ±90 and longitude within ±180")
    if float(distance) <= 0:
        raise QueryError(f"--near {near!r}: the distance must be above 0")
    return f"distance({lat},{lon},{distance}{unit or 'mi'})"


def split(value) -> tuple[str, ...]:
    """A list, or a comma- (or pipe-) separated string, as a tuple of stripped non-empty items."""
    items = value if isinstance(value, (list, tuple)) else re.split(r"[,|]", str(value))
    return tuple(str(i).strip() for i in items if str(i).strip())


def query(name: str = "default", **options) -> Query:
    """A Query from option values as the command line gives them (None for not given)."""
    given = {k: v for k, v in options.items() if v is not None}
    listed_text = [k for k in (*TEXT_QUERIES, "near", "advanced", "sort", "name") if not isinstance(given.get(k, ""), str)]
    if listed_text:
        raise QueryError(f"{listed_text[0]} must be one text, not a list")
    for listed in ("status", "nct"):
        if listed in given:
            given[listed] = split(given[listed])
    if "status" in given:
        given["status"] = tuple(s.upper() for s in given["status"])
    if "nct" in given:
        given["nct"] = tuple(n.upper() for n in given["nct"])
    return Query(name=name, **given)


def read_query_file(path: str | Path) -> list[Query]:
    """The queries of a TOML query file (see the module); QueryError saying what and where."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise QueryError(f"cannot read the query file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise QueryError(f"{path}: not TOML: {exc}") from None
    tables = data.pop("query", None)
    if tables is None:
        tables = [{"name": path.stem, **data}] if data else []
    elif data:
        raise QueryError(f"{path}: put every key inside a [[query]] table ({', '.join(sorted(data))} is outside)")
    if not isinstance(tables, list) or not tables:
        raise QueryError(f"{path}: no query (give keys such as condition = \"breast cancer\", or [[query]] tables)")
    fields = {f.name for f in dataclasses.fields(Query)}
    out: list[Query] = []
    for number, table in enumerate(tables, start=1):
        where = f"{path}: query {number}"
        if not isinstance(table, dict):
            raise QueryError(f"{where}: not a table")
        unknown = sorted(set(table) - fields)
        if unknown:
            raise QueryError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(fields))}")
        bad = [k for k, v in table.items() if not isinstance(v, (str, list)) or
               (isinstance(v, list) and not all(isinstance(i, str) for i in v))]
        if bad:
            raise QueryError(f"{where}: {bad[0]} must be text (or a list of text)")
        try:
            out.append(query(**{"name": f"{path.stem}-{number}" if len(tables) > 1 else path.stem, **table}))
        except QueryError as exc:
            raise QueryError(f"{where}: {exc}") from None
    names = [q.name for q in out]
    if len(set(names)) != len(names):
        raise QueryError(f"{path}: two queries are named {next(n for n in names if names.count(n) > 1)!r}")
    return out


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    return f'"{value}"' if " " in value else value
