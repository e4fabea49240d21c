"""The ``resultsSection`` of one API v2 JSON study -> the ``results`` of a ``TrialSchema`` dict (for
:mod:`._ctgov_json_study`). Field names are the API's own; every field of ResultsSection
(../shared/reference/ctg-oas-v2.yaml) is read, so none is reported unmapped.

Numbers are kept as the text the registry wrote (``"12"``, ``"<0.0001"``, ``"NA"``); a number
given as a JSON number is read as its text. An outcome measure's ``dispersionType`` is display
text in the API ("Standard Deviation"), a baseline measure's an enum (``STANDARD_DEVIATION``):
both become the enum name through ``mappings/ctgov-legacy-values.json`` (``dispersionType``),
as the legacy XML reader's do; an unknown one stays as written.
"""
from __future__ import annotations

from typing import Any

from . import _ctgov
from ._ctgov_json_values import StudyValues, take
from ._ctgov_legacy import UnknownValue, api_value
from ._fields import Fields

FIELD = "results"  # the Trial field every problem here names


def results(study: StudyValues, section: Fields) -> dict | None:
    """The Trial's ``results`` from ``resultsSection`` (None when the study has none)."""
    if not isinstance(section.value, dict):
        return None
    reader = _Results(study)
    return {
        "participant_flow": reader.flow(study.obj(section, "participantFlowModule", FIELD)),
        "baseline": reader.baseline(study.obj(section, "baselineCharacteristicsModule", FIELD)),
        "outcome_measures": [m for item in study.items(study.obj(section, "outcomeMeasuresModule", FIELD),
                                                       "outcomeMeasures", FIELD)
                             if (m := reader.measure(item, outcome=True))["title"]],
        "adverse_events": reader.adverse_events(study.obj(section, "adverseEventsModule", FIELD)),
        "more_info": reader.more_info(study.obj(section, "moreInfoModule", FIELD)),
    }


def enum_name(section: str, raw: str | None) -> str | None:
    """The API v2 name of an enumerated results value written as display text or as the name
    (``ctgov-legacy-values.json`` ``section``); anything else as written."""
    try:
        return api_value(section, raw)
    except UnknownValue:
        return raw.strip() if raw else None


class _Results:
    """Typed reads of the results modules, through the study's reads (problems name ``results``)."""

    def __init__(self, study: StudyValues):
        self.s = study

    def _text(self, node: Fields, key: str) -> str | None:
        return self.s.text(node, key, FIELD)

    def _number(self, node: Fields, key: str) -> str | None:
        """A number as text: API v2 writes them as strings; a JSON number is taken as its text."""
        value = take(node, key)
        if isinstance(value, bool) or value is None:
            return None if value is None else str(value).lower()
        if isinstance(value, (int, float)):
            return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        if isinstance(value, str):
            return value.strip() or None
        self.s._wrong(node, key, value, "text", FIELD)
        return None

    def groups(self, node: Fields, key: str = "groups") -> list[dict]:
        out = []
        for item in self.s.items(node, key, FIELD):
            ident = self.s.code(item, "id", FIELD)
            if ident:
                out.append({"id": ident, "title": self._text(item, "title"),
                            "description": self._text(item, "description")})
        return out

    def _values(self, node: Fields, key: str, value_key: str, units_key: str | None = None) -> list[dict]:
        out = []
        for item in self.s.items(node, key, FIELD):
            group = self.s.code(item, "groupId", FIELD)
            if group:
                out.append({"group_id": group, "value": self._number(item, value_key),
                            "units": self._number(item, units_key) if units_key else None,
                            "comment": self._text(item, "comment")})
        return out

    def denoms(self, node: Fields) -> list[dict]:
        return [{"units": self._text(d, "units"), "counts": self._values(d, "counts", "value")}
                for d in self.s.items(node, "denoms", FIELD)]

    def flow(self, module: Fields) -> dict | None:
        if not isinstance(module.value, dict):
            return None
        periods = []
        for period in self.s.items(module, "periods", FIELD):
            periods.append({
                "title": self._text(period, "title"),
                "milestones": self._milestones(period, "milestones"),
                "drop_withdraws": self._milestones(period, "dropWithdraws", "reasons"),
            })
        return {"recruitment_details": self._text(module, "recruitmentDetails"),
                "pre_assignment_details": self._text(module, "preAssignmentDetails"),
                "type_units_analyzed": self._text(module, "typeUnitsAnalyzed"),
                "groups": self.groups(module), "periods": periods}

    def _milestones(self, period: Fields, key: str, counts_key: str = "achievements") -> list[dict]:
        out = []
        for item in self.s.items(period, key, FIELD):
            kind = self._text(item, "type")
            if kind:
                out.append({"type": kind, "comment": self._text(item, "comment"),
                            "counts": self._values(item, counts_key, "numSubjects", "numUnits")})
        return out

    def baseline(self, module: Fields) -> dict | None:
        if not isinstance(module.value, dict):
            return None
        return {"population_description": self._text(module, "populationDescription"),
                "type_units_analyzed": self._text(module, "typeUnitsAnalyzed"),
                "groups": self.groups(module), "denoms": self.denoms(module),
                "measures": [m for item in self.s.items(module, "measures", FIELD)
                             if (m := self.measure(item, outcome=False))["title"]]}

    def measure(self, item: Fields, outcome: bool) -> dict:
        out: dict[str, Any] = {
            "title": self._text(item, "title"),
            "description": self._text(item, "description"),
            "population_description": self._text(item, "populationDescription"),
            "param_type": enum_name("measureParam", self.s.code(item, "paramType", FIELD)),
            "dispersion_type": enum_name("dispersionType", self.s.code(item, "dispersionType", FIELD)),
            "unit_of_measure": self._text(item, "unitOfMeasure"),
            "calculate_pct": self.s.flag(item, "calculatePct", FIELD),
            "denom_units_selected": self._text(item, "denomUnitsSelected"),
            "denoms": self.denoms(item),
            "classes": [self._class(c) for c in self.s.items(item, "classes", FIELD)],
        }
        if outcome:
            out.update({
                "kind": enum_name("outcomeMeasureType", self.s.code(item, "type", FIELD)),
                "reporting_status": self.s.code(item, "reportingStatus", FIELD),
                "anticipated_posting_date": self.s.code(item, "anticipatedPostingDate", FIELD),
                "time_frame": self._text(item, "timeFrame"),
                "type_units_analyzed": self._text(item, "typeUnitsAnalyzed"),
                "groups": self.groups(item),
                "analyses": [self._analysis(a) for a in self.s.items(item, "analyses", FIELD)],
            })
        return out

    def _class(self, item: Fields) -> dict:
        categories = []
        for category in self.s.items(item, "categories", FIELD):
            measurements = []
            for m in self.s.items(category, "measurements", FIELD):
                group = self.s.code(m, "groupId", FIELD)
                if group:
                    measurements.append({"group_id": group, "value": self._number(m, "value"),
                                         "spread": self._number(m, "spread"),
                                         "lower_limit": self._number(m, "lowerLimit"),
                                         "upper_limit": self._number(m, "upperLimit"),
                                         "comment": self._text(m, "comment")})
            categories.append({"title": self._text(category, "title"), "measurements": measurements})
        return {"title": self._text(item, "title"), "denoms": self.denoms(item), "categories": categories}

    def _analysis(self, item: Fields) -> dict:
        text = self._text
        return {
            "group_ids": self.s.texts(item, "groupIds", FIELD, codes=True),
            "group_description": text(item, "groupDescription"),
            "tested_non_inferiority": self.s.flag(item, "testedNonInferiority", FIELD),
            "non_inferiority_type": enum_name("nonInferiorityType", self.s.code(item, "nonInferiorityType", FIELD)),
            "non_inferiority_comment": text(item, "nonInferiorityComment"),
            "p_value": self._number(item, "pValue"), "p_value_comment": text(item, "pValueComment"),
            "statistical_method": text(item, "statisticalMethod"),
            "statistical_comment": text(item, "statisticalComment"),
            "param_type": text(item, "paramType"), "param_value": self._number(item, "paramValue"),
            "dispersion_type": enum_name("analysisDispersionType", self.s.code(item, "dispersionType", FIELD)),
            "dispersion_value": self._number(item, "dispersionValue"),
            "ci_pct_value": self._number(item, "ciPctValue"),
            "ci_num_sides": enum_name("ciNumSides", self.s.code(item, "ciNumSides", FIELD)),
            "ci_lower_limit": self._number(item, "ciLowerLimit"), "ci_upper_limit": self._number(item, "ciUpperLimit"),
            "ci_lower_limit_comment": text(item, "ciLowerLimitComment"),
            "ci_upper_limit_comment": text(item, "ciUpperLimitComment"),
            "estimate_comment": text(item, "estimateComment"),
            "other_analysis_description": text(item, "otherAnalysisDescription"),
        }

    def adverse_events(self, module: Fields) -> dict | None:
        if not isinstance(module.value, dict):
            return None
        integer = self.s.integer
        groups = []
        for item in self.s.items(module, "eventGroups", FIELD):
            ident = self.s.code(item, "id", FIELD)
            if ident:
                groups.append({"id": ident, "title": self._text(item, "title"),
                               "description": self._text(item, "description"),
                               **{f"{kind}_num_{n}": integer(item, f"{kind}Num{key}", FIELD)
                                  for kind in ("deaths", "serious", "other")
                                  for n, key in (("affected", "Affected"), ("at_risk", "AtRisk"))}})
        events = []
        for key, serious in (("seriousEvents", True), ("otherEvents", False)):
            for item in self.s.items(module, key, FIELD):
                term = self._text(item, "term")
                if not term:
                    continue
                events.append({
                    "term": term, "serious": serious, "organ_system": self._text(item, "organSystem"),
                    "source_vocabulary": self._text(item, "sourceVocabulary"),
                    "assessment_type": enum_name("eventAssessment", self.s.code(item, "assessmentType", FIELD)),
                    "notes": self._text(item, "notes"),
                    "stats": [{"group_id": g, "num_events": integer(st, "numEvents", FIELD),
                               "num_affected": integer(st, "numAffected", FIELD),
                               "num_at_risk": integer(st, "numAtRisk", FIELD)}
                              for st in self.s.items(item, "stats", FIELD)
                              if (g := self.s.code(st, "groupId", FIELD))],
                })
        return {"frequency_threshold": self._number(module, "frequencyThreshold"),
                "time_frame": self._text(module, "timeFrame"), "description": self._text(module, "description"),
                "all_cause_mortality_comment": self._text(module, "allCauseMortalityComment"),
                "groups": groups, "events": events}

    def more_info(self, module: Fields) -> dict | None:
        if not isinstance(module.value, dict):
            return None
        agreement = self.s.obj(module, "certainAgreement", FIELD)
        contact = self.s.obj(module, "pointOfContact", FIELD)
        return {
            "limitations": self._text(self.s.obj(module, "limitationsAndCaveats", FIELD), "description"),
            "pi_sponsor_employee": self.s.flag(agreement, "piSponsorEmployee", FIELD),
            "restrictive_agreement": self.s.flag(agreement, "restrictiveAgreement", FIELD),
            "restriction_type": self.s.code(agreement, "restrictionType", FIELD),
            "agreement_details": self._text(agreement, "otherDetails"),
            "contact_title": self._text(contact, "title"),
            "contact_organization": self._text(contact, "organization"),
            "contact_email": self._text(contact, "email"),
            "contact_phone": _ctgov.phone(self._text(contact, "phone"), self._text(contact, "phoneExt")),
        }
