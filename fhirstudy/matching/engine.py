"""``ResearchStudy/$match``: the studies a patient could join, best first, each with its reasons.

1. Candidates are the studies about one of the patient's conditions (:func:`candidate_searches`,
   their union, keys only): a shared condition group or MeSH descriptor, a condition text that
   starts with the patient's, umbrella terms for a patient with a cancer ("Advanced Solid
   Tumors"; ``match-policy.json`` ``candidates``); a patient without a Condition has every study
   screened (then status, phase, sex and place are asked of the index too).
2. Each candidate is screened from its profile (:mod:`.profile`, kept per version between
   requests): its recruitment status (every status not asked for is left out; a study that states
   none is kept: its status is unknown, not wrong), phase when asked, sites when a place is given,
   its condition and the receptor status its subtype keywords ask for
   (:mod:`.conditions`), then every characteristic of its eligibility a patient's data can
   decide (:mod:`.criteria`). A study the patient certainly fails (an inclusion criterion not
   met, an exclusion criterion met) is left out, unless ``includeIneligible`` (then score 0).
3. The score (0..1) is the weighted share of computable criteria passed, an unknown one counting
   half, the condition :data:`CONDITION_WEIGHT` times; text-only criteria do not count. Ties keep
   the nearer study first, then the order the searches found them.
4. With a place, only sites near it count, and of those only sites whose own recruitment status
   is one of the statuses asked for (or that state none); the nearest one's distance is on the
   entry (``location-distance``).
5. The ``count`` best are read and judged in full (:func:`judge_study`: every criterion, text
   ones too) for the report.

Per criterion, ``entry.search`` carries a ``match-criterion`` extension: linkId, description,
exclusion, ``verdict`` (met / not-met / unknown: whether the criterion's statement holds for the
patient), ``fit`` (pass / fail / unknown: for an exclusion criterion, met means fail), the
patient resources that decided it and the information that is missing.
"""
from __future__ import annotations

import gc
import heapq
import time
from dataclasses import dataclass

import orjson

from .. import terminology
from ..search import geo
from ..errors import QueryTooCostly
from ..limits import MAX_MATCH_SECONDS, MAX_OR_VALUES
from .conditions import (MESH, judge_condition, patient_keys, significant_words, study_conditions,
                         subtype_characteristics)
from .criteria import Verdict, fits, judge
from .profile import DEFAULT_PROFILES, Profile, ProfileCache, build, eligibility_id
from .request import MatchRequest

EXTENSION_BASE = "https://fhirstudy.org/fhir/StructureDefinition/"
CRITERION_URL = EXTENSION_BASE + "match-criterion"
MISSING_URL = EXTENSION_BASE + "match-missing"
DISTANCE_URL = "http://hl7.org/fhir/StructureDefinition/location-distance"
RECRUITMENT_CODES = frozenset(v["code"] for v in terminology.load_mapping("ctgov-to-fhir.json")
                              ["overallStatus"]["codes"].values())
CONDITION_WEIGHT = 3
PAGE = 200            # studies asked of the search service at a time (without conditions)
KEYS_PAGE = 5000      # candidate keys read at a time
FREEZE_AFTER = 500    # profiles built in one go that move what is alive out of the collector's reach


@dataclass(frozen=True)
class Criterion:
    """One criterion of a study and the patient's verdict on it."""

    link_id: str
    description: str
    exclude: bool
    verdict: Verdict

    @property
    def fit(self) -> str:
        return fits(self.verdict, self.exclude)


@dataclass
class Judged:
    """A study, its criteria judged, its score and whether the patient certainly fails it."""

    study: dict
    criteria: list[Criterion]
    eligible: bool
    score: float
    distance_km: float | None = None


def judge_study(study: dict, eligibility: dict | None, request: MatchRequest) -> Judged:
    """The verdicts of ``study`` (with its eligibility EvidenceVariable) for the request's patient."""
    patient, on = request.patient, request.on
    conditions = study_conditions(study)
    criteria = [Criterion("condition", "Condition: " + "; ".join(c.text for c in conditions), False,
                          judge_condition(conditions, patient))]
    for characteristic in subtype_characteristics(study) + ((eligibility or {}).get("characteristic") or []):
        criteria.append(Criterion(characteristic.get("linkId") or "", characteristic.get("description") or "",
                                  bool(characteristic.get("exclude")), judge(characteristic, patient, on)))
    eligible, score = _score([(c.link_id, c.fit, c.verdict.computable) for c in criteria])
    return Judged(study, criteria, eligible, score)


_CREDIT = {"pass": 1.0, "unknown": 0.5, "fail": 0.0}


def _screen(profile: Profile, request: MatchRequest, memo: dict | None = None) -> tuple[bool, float]:
    """Eligibility and score of a study from its profile: :func:`_score` of the same verdicts as
    :func:`judge_study`'s, added up in one pass. ``memo`` keeps one request's fits of shared
    (interned) statements and condition lists, by object."""
    memo = {} if memo is None else memo
    patient, on = request.patient, request.on
    kept = memo.get(id(profile.conditions))
    if kept is None or kept[0] is not profile.conditions:
        verdict = judge_condition(profile.conditions, patient)
        kept = memo[id(profile.conditions)] = (profile.conditions, _weighed(fits(verdict, False), verdict, "condition"))
    fit, weight, credit = kept[1]
    if fit == "fail":
        return False, 0.0
    total, passed = weight, credit
    for link, exclude, said in profile.characteristics:
        kept = memo.get(id(said))
        if kept is None or kept[0] is not said:
            verdict = judge(said, patient, on)
            kept = memo[id(said)] = (said, verdict, fits(verdict, False), fits(verdict, True))
        fit = kept[3] if exclude else kept[2]
        if fit == "fail":
            return False, 0.0
        if kept[1].computable:
            weight = CONDITION_WEIGHT if link == "condition" else 1
            total += weight
            passed += weight * _CREDIT[fit]
    return True, (round(passed / total, 4) if total else 0.5)


def _weighed(fit: str, verdict: Verdict, link: str) -> tuple[str, float, float]:
    """``fit``, and the weight and credit :func:`_score` gives it."""
    if not verdict.computable:
        return fit, 0.0, 0.0
    weight = CONDITION_WEIGHT if link == "condition" else 1
    return fit, float(weight), weight * _CREDIT[fit]


def _score(fitted: list[tuple[str, str, bool]]) -> tuple[bool, float]:
    total = passed = 0.0
    for link, fit, computable in fitted:
        if fit == "fail":
            return False, 0.0
        if computable:
            weight = CONDITION_WEIGHT if link == "condition" else 1
            total += weight
            passed += weight * _CREDIT[fit]
    return True, (round(passed / total, 4) if total else 0.5)


class Matcher:
    """``$match`` over one repository through its search service, keeping the profiles of the
    studies it has screened (:class:`~.profile.ProfileCache`) between requests."""

    def __init__(self, service, profiles: int = DEFAULT_PROFILES):
        self.service = service
        self.repository = service.repository
        self.cache = ProfileCache(profiles)

    def match(self, request: MatchRequest, base: str) -> dict:
        """The searchset Bundle: the ``count`` best studies, ``total`` counting all kept."""
        sites = self._near_sites(request) if request.near else None
        statuses, phases = set(request.statuses), set(request.phases)
        best: list = []
        total = order = 0
        memo: dict = {}
        for profile in self._candidates(request):
            if profile.statuses & RECRUITMENT_CODES and not profile.statuses & statuses:
                continue   # a status not asked for (a study that states none is kept)
            if phases and not profile.phases & phases:
                continue
            distance = None
            if sites is not None:
                near = [sites[s] for s in profile.sites if s in sites]
                if not near:
                    continue
                distance = min(near)
            eligible, score = _screen(profile, request, memo)
            if not eligible and not request.include_ineligible:
                continue
            total, order = total + 1, order + 1
            key = (score, -(distance or 0.0), -order)
            if len(best) < request.count:
                heapq.heappush(best, (key, profile.study_id, distance))
            elif key > best[0][0]:
                heapq.heapreplace(best, (key, profile.study_id, distance))
        ranked = sorted(best, reverse=True)
        entries = [_entry(j, base) for j in self._judge_fully([(sid, d) for _, sid, d in ranked], request)]
        if request.patient.problems:
            entries.append({"resource": {"resourceType": "OperationOutcome", "issue": [
                {"severity": "warning", "code": "processing", "diagnostics": p} for p in request.patient.problems]},
                "search": {"mode": "outcome"}})
        return {"resourceType": "Bundle", "type": "searchset", "total": total,
                "link": [{"relation": "self", "url": f"{base}/ResearchStudy/$match"}], "entry": entries}

    # -- candidates ---------------------------------------------------------------------------

    def _candidates(self, request: MatchRequest):
        """The profile of every candidate study, once each (several searches may find it)."""
        seen: set[int] = set()
        deadline = time.monotonic() + MAX_MATCH_SECONDS
        generation = self.repository.generation()
        for params in candidate_searches(request):
            _in_time(deadline, seen)
            key = tuple(params)
            pks = self.cache.candidates(key, generation)
            current = self.cache.get_many(pks) if pks is not None else {}
            if pks is not None and all(e is not None and e[1] == generation for e in current.values()):
                yield from (current[pk][0] for pk in pks if pk not in seen)   # found since the last write
                seen.update(pks)
                continue
            found: list[int] = []
            for pks, profiles in self._search(params, generation, deadline, seen):
                found.extend(pks)
                yield from profiles
            self.cache.put_candidates(key, generation, found)

    def _search(self, params: list[tuple[str, str]], generation: int, deadline: float, seen: set[int]):
        """Per page of one candidate search: the primary keys it found, and the profiles of those
        ``seen`` lacked."""
        query = self.service.parse("ResearchStudy", params)
        query.count = KEYS_PAGE   # keys only: pages far larger than a search's
        while True:
            keys, cursor = self.repository.search_keys(query, versions=False)
            fresh = [k.pk for k in keys if k.pk not in seen]
            seen.update(fresh)
            current = self.cache.get_many(fresh)
            if all(e is not None and e[1] == generation for e in current.values()):
                yield [k.pk for k in keys], [current[pk][0] for pk in fresh]
            else:   # something was written since: ask for versions, rebuild what changed
                versioned, _ = self.repository.search_keys(query)
                yield [k.pk for k in keys], self._profiles([k for k in versioned if k.pk in current], generation)
            _in_time(deadline, seen)
            if cursor is None:
                return
            query.cursor = cursor

    def _profiles(self, keys: list, generation: int) -> list[Profile]:
        """Profiles for ``keys`` (with versions): cached ones whose study and eligibility versions
        are current, the others built from the stored resources."""
        cached = {}
        for key in keys:
            entry = self.cache.get(key.pk)
            cached[key.pk] = entry[0] if entry is not None and entry[0].version == key.version else None
        linked = [p.eligibility[0] for p in cached.values() if p is not None and p.eligibility]
        versions = {k: v.version for k, v in self.repository.read_many("EvidenceVariable", linked, content=False).items()}
        stale = {key.id: key.pk for key in keys if cached[key.pk] is None or (
            cached[key.pk].eligibility is not None and versions.get(cached[key.pk].eligibility[0]) !=
            cached[key.pk].eligibility[1])}
        for pk, profile in cached.items():
            if profile is not None and profile.study_id not in stale:
                self.cache.put(profile, generation)
        if stale:
            studies = self.repository.read_many("ResearchStudy", list(stale))
            parsed = {sid: orjson.loads(s.json) for sid, s in studies.items()}
            evs = self.repository.read_many("EvidenceVariable", [e for e in map(eligibility_id, parsed.values()) if e])
            for sid, study in parsed.items():
                ev = evs.get(eligibility_id(study) or "")
                profile = build(stale[sid], study, studies[sid].version, orjson.loads(ev.json) if ev else None,
                                ev.version if ev else None, self.cache.intern)
                cached[profile.pk] = profile
                self.cache.put(profile, generation)
            if len(stale) >= FREEZE_AFTER:
                # profiles live long: leave them out of the collector's full passes, which would
                # otherwise walk every one of them (~100 ms at 4,000) in some later request
                gc.freeze()
        return [cached[key.pk] for key in keys if cached.get(key.pk) is not None]

    def _near_sites(self, request: MatchRequest) -> dict[str, float]:
        """``Location/<id>`` -> km from the place, for sites within the radius whose own status is
        one asked for or not stated (positions and statuses kept per site while the store's
        generation stands)."""
        latitude, longitude, km = request.near
        generation = self.repository.generation()
        key = (latitude, longitude, km, frozenset(request.statuses))
        kept = self.cache.near(key, generation)
        if kept is not None:
            return kept
        centre = geo.position(latitude, longitude)
        query = self.service.parse("Location", [("near", f"{latitude}|{longitude}|{km}|km"), ("_total", "none")])
        query.count = KEYS_PAGE
        wanted, out = set(request.statuses), {}
        while True:
            keys, cursor = self.repository.search_keys(query, versions=False)
            sites = {k.pk: self.cache.site(k.pk, generation) for k in keys}
            if any(site is None for site in sites.values()):
                versioned, _ = self.repository.search_keys(query)
                stored = self.repository.read_many("Location", [k.id for k in versioned if sites.get(k.pk) is None])
                for key in versioned:
                    if key.id in stored:
                        sites[key.pk] = self.cache.put_site(key.pk, generation, orjson.loads(stored[key.id].json))
            for site in sites.values():
                if site is None or site.position is None or (site.statuses and not site.statuses & wanted):
                    continue
                out[site.reference] = geo.great_circle_km(centre, geo.position(*site.position))
            if cursor is None:
                self.cache.put_near(key, generation, out)
                return out
            query.cursor = cursor

    def _judge_fully(self, ranked: list[tuple[str, float | None]], request: MatchRequest) -> list[Judged]:
        studies = self.repository.read_many("ResearchStudy", [sid for sid, _ in ranked])
        parsed = {sid: orjson.loads(s.json) for sid, s in studies.items()}
        evs = self.repository.read_many("EvidenceVariable", [e for e in map(eligibility_id, parsed.values()) if e])
        out = []
        for sid, distance in ranked:
            if sid not in parsed:   # deleted meanwhile
                continue
            ev = evs.get(eligibility_id(parsed[sid]) or "")
            judged = judge_study(parsed[sid], orjson.loads(ev.json) if ev else None, request)
            judged.distance_km = distance
            out.append(judged)
        return out


def _in_time(deadline: float, seen: set[int]) -> None:
    """Never a partial answer past the time limit: it could leave out a study."""
    if time.monotonic() > deadline:
        raise QueryTooCostly(f"$match screened {len(seen)} studies in {MAX_MATCH_SECONDS} s and was "
                             "not done: give the patient's Condition, a place or a phase to narrow it")


def _other_statuses(statuses: tuple[str, ...]) -> list[str]:
    table = terminology.load_mapping("ctgov-to-fhir.json")["overallStatus"]["codes"]
    return sorted({v["code"] for v in table.values()} - set(statuses))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("$", "\\$").replace("|", "\\|")


def _chunked(name: str, values: list[str]) -> list[tuple[str, str]]:
    values = list(dict.fromkeys(v for v in values if v))
    return [(name, ",".join(values[i:i + MAX_OR_VALUES])) for i in range(0, len(values), MAX_OR_VALUES)]


def candidate_searches(request: MatchRequest) -> list[list[tuple[str, str]]]:
    """The ResearchStudy searches whose matches are screened (their union): one per way a study
    can be about a patient condition (``match-policy.json`` ``candidates``). Status, phase, place,
    sex and age are screened from the profiles; only when no condition of the patient is in a
    condition group or has a MeSH code (nothing tells which studies are about it, so every study
    is a candidate) are they asked of the index too."""
    base = [("_count", str(PAGE)), ("_total", "none")]
    patient = request.patient
    policy = terminology.load_mapping("match-policy.json")["candidates"]
    group_system = terminology.load_mapping("conditions.json")["codeSystem"]["url"]
    tokens, texts, oncology = [], [], False
    for diagnosis in patient.conditions:
        groups, mesh, folded = patient_keys(diagnosis)
        tokens += [f"{group_system}|{g}" for g in sorted(groups)] + [f"{MESH}|{m}" for m in sorted(mesh)]
        texts += [_escape(t) for t in sorted(folded)]
        if not groups and not mesh:   # in no group: its words find the studies that name it otherwise
            texts += [_escape(w) for t in sorted(folded) for w in sorted(significant_words(t))]
        oncology |= bool(groups & set(policy["oncology_groups"]))
    if not tokens:
        return [base + _index_filters(request)]
    searches = [base + [p] for p in _chunked("condition", tokens) + _chunked("condition:text", texts)]
    if oncology:
        searches += [base + [p] for p in _chunked("condition:text", policy["umbrella_text"])]
    return searches


def _index_filters(request: MatchRequest) -> list[tuple[str, str]]:
    """Status, phase, sex and place as search parameters (the index answers them as screening
    does: a study that states no status or no sex limit is kept)."""
    out = []
    others = _other_statuses(request.statuses)
    if others:
        out.append(("recruitment-status:not", ",".join(others)))
    if request.phases:
        out.append(("phase", ",".join(request.phases)))
    if not request.include_ineligible and request.patient.gender in ("female", "male"):
        out.append(("eligible-sex", request.patient.gender))
    if request.near:
        latitude, longitude, km = request.near
        out.append(("site.near", f"{latitude}|{longitude}|{km}|km"))
    return out


def _criterion_extension(c: Criterion) -> dict:
    parts = [("linkId", "valueString", c.link_id), ("description", "valueString", c.description or None),
             ("exclusion", "valueBoolean", c.exclude), ("verdict", "valueCode", c.verdict.state),
             ("fit", "valueCode", c.fit), ("computable", "valueBoolean", c.verdict.computable),
             ("reason", "valueString", c.verdict.reason or None)]
    parts += [("evidence", "valueReference", {"reference": r}) for r in c.verdict.evidence]
    parts += [("missing", "valueString", m) for m in c.verdict.missing]
    return {"url": CRITERION_URL, "extension": [{"url": k, t: v} for k, t, v in parts if v is not None]}


def _entry(judged: Judged, base: str) -> dict:
    extensions = []
    if judged.distance_km is not None:
        extensions.append({"url": DISTANCE_URL, "valueDistance": {
            "value": round(judged.distance_km, 1), "unit": "km", "system": "http://unitsofmeasure.org",
            "code": "km"}})
    missing = dict.fromkeys(m for c in judged.criteria for m in c.verdict.missing if c.verdict.computable)
    extensions += [{"url": MISSING_URL, "valueString": m} for m in missing]
    extensions += [_criterion_extension(c) for c in judged.criteria]
    study = judged.study
    return {"fullUrl": f"{base}/ResearchStudy/{study['id']}", "resource": study,
            "search": {"extension": extensions, "mode": "match", "score": judged.score}}
