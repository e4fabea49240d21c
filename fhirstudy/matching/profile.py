"""A study as ``$match`` screens it: its conditions, sites and only the characteristics a patient's
data can decide, kept between requests per version of the study and of its eligibility.

Screening a study from its profile gives the same eligibility and score as judging the whole
study (:func:`fhirstudy.matching.engine.judge_study`): text-only characteristics are never
computable, so they change neither. Only the studies that make the page are read and judged in
full, for their per-criterion report.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock

from .conditions import StudyCondition, study_conditions, subtype_characteristics

DEFAULT_PROFILES = 200_000   # profiles kept per matcher (a few hundred bytes to a few KB each)


@dataclass(frozen=True)
class Profile:
    """What screening needs of one version of a study (and of its eligibility EvidenceVariable)."""

    study_id: str
    version: int
    eligibility: tuple[str, int] | None          # the EvidenceVariable's id and version
    conditions: tuple[StudyCondition, ...]
    characteristics: tuple[dict, ...]            # subtype, then eligibility, those with a definition
    sites: tuple[str, ...]                       # "Location/<id>"


def eligibility_id(study: dict) -> str | None:
    """The id of the EvidenceVariable ``recruitment.eligibility`` points at, when it is local."""
    reference = ((study.get("recruitment") or {}).get("eligibility") or {}).get("reference") or ""
    kind, _, rid = reference.partition("/")
    return rid if kind == "EvidenceVariable" and rid and "/" not in rid else None


def _decidable(characteristic: dict) -> bool:
    return "definitionByTypeAndValue" in characteristic or "definitionByCombination" in characteristic


def build(study: dict, version: int, eligibility: dict | None, eligibility_version: int | None) -> Profile:
    """The profile of ``study`` (at ``version``) with its eligibility EvidenceVariable."""
    characteristics = subtype_characteristics(study) + [
        c for c in (eligibility or {}).get("characteristic") or [] if _decidable(c)]
    linked = (eligibility["id"], eligibility_version) if eligibility is not None else None
    return Profile(study["id"], version, linked, study_conditions(study), tuple(characteristics),
                   tuple(s["reference"] for s in study.get("site") or []
                         if isinstance(s, dict) and isinstance(s.get("reference"), str)))


class ProfileCache:
    """The latest profiles, least recently used dropped first (thread-safe)."""

    def __init__(self, max_entries: int = DEFAULT_PROFILES):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Profile] = OrderedDict()
        self._lock = Lock()

    def get(self, study_id: str, version: int) -> Profile | None:
        with self._lock:
            profile = self._entries.get(study_id)
            if profile is None or profile.version != version:
                return None
            self._entries.move_to_end(study_id)
            return profile

    def put(self, profile: Profile) -> None:
        if not self.max_entries:
            return
        with self._lock:
            self._entries[profile.study_id] = profile
            self._entries.move_to_end(profile.study_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
