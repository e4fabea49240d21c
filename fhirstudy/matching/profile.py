"""A study as ``$match`` screens it: its status, phase, conditions, sites and only the
characteristics a patient's data can decide, kept between requests per version of the study and
of its eligibility.

Screening a study from its profile gives the same eligibility and score as judging the whole
study (:func:`fhirstudy.matching.engine.judge_study`): text-only characteristics are never
computable, so they change neither. Only the studies that make the page are read and judged in
full, for their per-criterion report.

The cache holds a profile by the study's primary key with the store generation at which it was
last known to be current (and so, per generation, the sites' positions, the sites near the last
places asked from and the keys each candidate search found): while the generation has not moved (nothing written, by any process),
a profile is used without asking the database for versions. Equal characteristics of different
studies ("ECOG 0-1", "ANC >= 1.5 x 10^9/L"), and equal condition lists, are kept once
(:meth:`ProfileCache.intern`), so a request judges each of them once.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock

import orjson

from .conditions import StudyCondition, study_conditions, subtype_characteristics
from .criteria import window_days

DEFAULT_PROFILES = 200_000   # profiles kept per matcher (a few hundred bytes to a few KB each)
NEAR_PLACES = 64             # places whose near sites are kept
CANDIDATE_SEARCHES = 256     # candidate searches whose keys are kept
STATUS_SYSTEM = "http://hl7.org/fhir/research-study-status"
PHASE_SYSTEM = "http://hl7.org/fhir/research-study-phase"


@dataclass(frozen=True)
class Profile:
    """What screening needs of one version of a study (and of its eligibility EvidenceVariable)."""

    pk: int
    study_id: str
    version: int
    eligibility: tuple[str, int] | None          # the EvidenceVariable's id and version
    statuses: frozenset[str]                     # research-study-status codes of progressStatus
    phases: frozenset[str]
    conditions: tuple[StudyCondition, ...]
    characteristics: tuple[tuple[str, bool, dict], ...]   # (linkId, exclude, what it states): subtype,
                                                          # then eligibility, those with a definition
    sites: tuple[str, ...]                       # "Location/<id>"


def eligibility_id(study: dict) -> str | None:
    """The id of the EvidenceVariable ``recruitment.eligibility`` points at, when it is local."""
    reference = ((study.get("recruitment") or {}).get("eligibility") or {}).get("reference") or ""
    kind, _, rid = reference.partition("/")
    return rid if kind == "EvidenceVariable" and rid and "/" not in rid else None


def _decidable(characteristic: dict) -> bool:
    return "definitionByTypeAndValue" in characteristic or "definitionByCombination" in characteristic


WORDS = ("linkId", "description")   # what a characteristic says to people, not what a verdict reads


def statement(characteristic: dict) -> dict:
    """What a verdict on ``characteristic`` depends on: everything but its linkId and words (the
    linkId is kept for "sex", "age" and "healthy-volunteers", which the verdict reads)."""
    out = {k: v for k, v in characteristic.items() if k not in WORDS or (
        k == "linkId" and v in ("sex", "age", "healthy-volunteers"))}
    window = window_days(characteristic)
    if window is not None:
        out["_windowDays"] = window
    combination = out.get("definitionByCombination")
    if combination:
        out["definitionByCombination"] = {**combination, "characteristic": [
            statement(c) for c in combination.get("characteristic") or []]}
    return out


def _codes(concepts, system: str) -> frozenset[str]:
    return frozenset(c.get("code") for concept in concepts if isinstance(concept, dict)
                     for c in concept.get("coding") or [] if c.get("system") == system)


def build(pk: int, study: dict, version: int, eligibility: dict | None, eligibility_version: int | None,
          intern=lambda c: c) -> Profile:
    """The profile of ``study`` (primary key ``pk``, at ``version``) with its eligibility
    EvidenceVariable; ``intern`` shares equal characteristics between profiles."""
    characteristics = subtype_characteristics(study) + [
        c for c in (eligibility or {}).get("characteristic") or [] if _decidable(c)]
    linked = (eligibility["id"], eligibility_version) if eligibility is not None else None
    return Profile(pk, study["id"], version, linked,
                   _codes([p.get("state") for p in study.get("progressStatus") or [] if isinstance(p, dict)],
                          STATUS_SYSTEM),
                   _codes([study.get("phase")], PHASE_SYSTEM), intern(study_conditions(study)),
                   tuple((c.get("linkId") or "", bool(c.get("exclude")), intern(statement(c)))
                         for c in characteristics),
                   tuple(s["reference"] for s in study.get("site") or []
                         if isinstance(s, dict) and isinstance(s.get("reference"), str)))


@dataclass(frozen=True)
class Site:
    """A Location as the distance filter needs it: its reference, position and own statuses."""

    reference: str
    position: tuple[float, float] | None
    statuses: frozenset[str]


def site(location: dict) -> Site:
    """The :class:`Site` of a stored Location."""
    point = location.get("position") or {}
    position = (point.get("latitude"), point.get("longitude"))
    valid = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in position)
    return Site(f"Location/{location['id']}", position if valid else None,
                _codes(location.get("characteristic") or [], STATUS_SYSTEM))


class ProfileCache:
    """Profiles by primary key, each with the generation it was last known current at; least
    recently used dropped first (thread-safe)."""

    def __init__(self, max_entries: int = DEFAULT_PROFILES):
        self.max_entries = max_entries
        self._entries: OrderedDict[int, tuple[Profile, int]] = OrderedDict()
        self._shared: dict = {}
        self._sites: dict[int, tuple[Site, int]] = {}
        self._near: OrderedDict[tuple, tuple[dict[str, float], int]] = OrderedDict()
        self._candidates: OrderedDict[tuple, tuple[list[int], int]] = OrderedDict()
        self._lock = Lock()

    def get(self, pk: int) -> tuple[Profile, int] | None:
        """The profile of ``pk`` and the generation it was last known current at."""
        with self._lock:
            entry = self._entries.get(pk)
            if entry is not None:
                self._entries.move_to_end(pk)
            return entry

    def get_many(self, pks: list[int]) -> dict[int, tuple[Profile, int] | None]:
        """:meth:`get` of each of ``pks`` (under one lock)."""
        with self._lock:
            out = {}
            for pk in pks:
                entry = out[pk] = self._entries.get(pk)
                if entry is not None:
                    self._entries.move_to_end(pk)
            return out

    def put(self, profile: Profile, generation: int) -> None:
        if not self.max_entries:
            return
        with self._lock:
            self._entries[profile.pk] = (profile, generation)
            self._entries.move_to_end(profile.pk)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def site(self, pk: int, generation: int) -> Site | None:
        """The site of Location ``pk`` when it was read at ``generation``."""
        entry = self._sites.get(pk)
        return entry[0] if entry is not None and entry[1] == generation else None

    def put_site(self, pk: int, generation: int, location: dict) -> Site:
        """Keep the site of the stored ``location`` (primary key ``pk``) as read at ``generation``."""
        kept = site(location)
        with self._lock:
            if len(self._sites) > 4 * max(self.max_entries, 1):
                self._sites.clear()
            self._sites[pk] = (kept, generation)
        return kept

    def near(self, key: tuple, generation: int) -> dict[str, float] | None:
        """The sites near a place (``key``: latitude, longitude, km, statuses) as found at
        ``generation``: a hospital's patients ask from the same few places."""
        with self._lock:
            entry = self._near.get(key)
            if entry is None or entry[1] != generation:
                return None
            self._near.move_to_end(key)
            return entry[0]

    def put_near(self, key: tuple, generation: int, sites: dict[str, float]) -> None:
        with self._lock:
            self._near[key] = (sites, generation)
            while len(self._near) > NEAR_PLACES:
                self._near.popitem(last=False)

    def candidates(self, search: tuple, generation: int) -> list[int] | None:
        """The primary keys one candidate search (its parameters) found at ``generation``: patients
        with the same condition ask the same searches."""
        with self._lock:
            entry = self._candidates.get(search)
            if entry is None or entry[1] != generation:
                return None
            self._candidates.move_to_end(search)
            return entry[0]

    def put_candidates(self, search: tuple, generation: int, pks: list[int]) -> None:
        with self._lock:
            self._candidates[search] = (pks, generation)
            while len(self._candidates) > CANDIDATE_SEARCHES:
                self._candidates.popitem(last=False)

    def intern(self, value: dict | tuple) -> dict | tuple:
        """The one kept copy of ``value``, a characteristic or a tuple of conditions (equal
        content, same object: screening keeps one verdict per object)."""
        key = value if isinstance(value, tuple) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        with self._lock:
            if len(self._shared) > 4 * max(self.max_entries, 1):
                self._shared.clear()
            return self._shared.setdefault(key, value)

    def __len__(self) -> int:
        return len(self._entries)
