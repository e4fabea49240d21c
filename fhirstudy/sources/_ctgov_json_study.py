"""One API v2 JSON study -> a ``TrialSchema`` dict, module by module (for :mod:`.ctgov_json`; the
design choices are in that module's docstring)."""
from __future__ import annotations

from typing import Any

from ..errors import Problem
from ..terminology import mesh_descriptor_id
from . import _ctgov
from ._criteria import split_criteria
from ._ctgov_json_results import results
from ._ctgov_json_values import StudyValues, error, json_type, take, warning
from ._fields import Fields

_OUTCOME_LISTS = (("primary", "primaryOutcomes"), ("secondary", "secondaryOutcomes"), ("other", "otherOutcomes"))
_EXPANDED_ACCESS_TYPES = ("individual", "intermediate", "treatment")


class Study(StudyValues):
    """One study being converted, module by module."""

    def convert(self, ignored: frozenset[str]) -> tuple[dict | None, list[Problem], list[str]]:
        """The study as (data, problems, unmapped source paths not in ``ignored``)."""
        protocol = self.root.node("protocolSection")
        if not isinstance(protocol.value, dict):
            reason = ("no protocolSection: not a ClinicalTrials.gov API v2 study" if protocol.value is None else
                      f"protocolSection is {json_type(protocol.value)}, expected an object")
            return None, [error(reason, None)], self.root.unmapped(ignored)
        data: dict[str, Any] = {}
        self._identification(self.obj(protocol, "identificationModule"), data)
        self._status(self.obj(protocol, "statusModule"), data)
        self._sponsors(self.obj(protocol, "sponsorCollaboratorsModule"), data)
        self._oversight(self.obj(protocol, "oversightModule"), data)
        description = self.obj(protocol, "descriptionModule")
        data["brief_summary"] = self.text(description, "briefSummary", "brief_summary")
        data["detailed_description"] = self.text(description, "detailedDescription", "detailed_description")
        conditions = self.obj(protocol, "conditionsModule")
        data["conditions"] = self.texts(conditions, "conditions", "conditions")
        data["keywords"] = self.texts(conditions, "keywords", "keywords")
        self._design(self.obj(protocol, "designModule"), data)
        self._arms_interventions(self.obj(protocol, "armsInterventionsModule"), data)
        self._outcomes(self.obj(protocol, "outcomesModule"), data)
        self._eligibility(self.obj(protocol, "eligibilityModule"), data)
        self._contacts_locations(self.obj(protocol, "contactsLocationsModule"), data)
        self._references(self.obj(protocol, "referencesModule"), data)
        self._ipd_sharing(self.obj(protocol, "ipdSharingStatementModule"), data)
        derived = self.obj(self.root, "derivedSection")
        condition_browse = self.obj(derived, "conditionBrowseModule")
        data["condition_meshes"] = self._meshes(condition_browse, "condition_meshes")
        data["condition_ancestors"] = self._meshes(condition_browse, "condition_ancestors", "ancestors")
        data["intervention_meshes"] = self._meshes(self.obj(derived, "interventionBrowseModule"),
                                                   "intervention_meshes")
        data["has_results"] = self.flag(self.root, "hasResults", "has_results")
        data["results"] = results(self, self.obj(self.root, "resultsSection", "results"))
        data["_source_date"] = (data.get("last_update_date")
                                or self.code(self.obj(derived, "miscInfoModule"), "versionHolder", "last_update_date"))
        return data, self.problems, self.root.unmapped(ignored)

    def _identification(self, ident: Fields, data: dict) -> None:
        identifiers = []
        nct = self.code(ident, "nctId", "identifiers")
        if nct:
            identifiers.append({"value": nct, "kind": "nct"})
        elif not any(p.field == "identifiers" for p in self.problems):
            self.problems.append(error(f"no nctId ({ident.path}.nctId): a ClinicalTrials.gov study needs its "
                                        "NCT number", "identifiers"))
        for alias in self.texts(ident, "nctIdAliases", "identifiers", codes=True):
            identifiers.append({"value": alias, "kind": "secondary", "type": "NCT alias"})
        org_id = self.obj(ident, "orgStudyIdInfo")
        value = self.code(org_id, "id", "identifiers")
        if value:
            identifiers.append({"value": value, "kind": "org",
                                "assigner": self.text(self.obj(ident, "organization"), "fullName", "identifiers"),
                                "type": self.code(org_id, "type", "identifiers")})
        for info in self.items(ident, "secondaryIdInfos", "identifiers"):
            value = self.code(info, "id", "identifiers")
            if value:
                identifiers.append({"value": value, "kind": "secondary", "type": self.code(info, "type", "identifiers"),
                                    "assigner": self.text(info, "domain", "identifiers")})
        data["identifiers"] = identifiers
        data["brief_title"] = self.text(ident, "briefTitle", "brief_title")
        if data["brief_title"] is None and not any(p.field == "brief_title" for p in self.problems):
            self.problems.append(error(f"no briefTitle ({ident.path}.briefTitle): a study needs a title",
                                        "brief_title"))
        data["official_title"] = self.text(ident, "officialTitle", "official_title")
        data["acronym"] = self.text(ident, "acronym", "acronym")

    def _status(self, status: Fields, data: dict) -> None:
        data["status_verified_date"] = self.code(status, "statusVerifiedDate", "status_verified_date")
        data["overall_status"] = self.code(status, "overallStatus", "overall_status")
        data["last_known_status"] = self.code(status, "lastKnownStatus", "last_known_status")
        data["why_stopped"] = self.text(status, "whyStopped", "why_stopped")
        data["start_date"] = self.date(status, "startDateStruct", "start_date")
        data["primary_completion_date"] = self.date(status, "primaryCompletionDateStruct", "primary_completion_date")
        data["completion_date"] = self.date(status, "completionDateStruct", "completion_date")
        data["first_posted_date"] = self.code(self.obj(status, "studyFirstPostDateStruct"), "date",
                                              "first_posted_date")
        data["results_first_posted_date"] = self.code(self.obj(status, "resultsFirstPostDateStruct"), "date",
                                                      "results_first_posted_date")
        data["last_update_date"] = self.code(self.obj(status, "lastUpdatePostDateStruct"), "date", "last_update_date")

    def _sponsors(self, module: Fields, data: dict) -> None:
        lead = self.obj(module, "leadSponsor")
        name = self.text(lead, "name", "sponsor")
        data["sponsor"] = ({"name": name, "role": "lead-sponsor", "classifier": self.code(lead, "class", "sponsor")}
                           if name else None)
        collaborators = []
        for item in self.items(module, "collaborators", "collaborators"):
            name = self.text(item, "name", "collaborators")
            if name:
                collaborators.append({"name": name, "role": "collaborator",
                                      "classifier": self.code(item, "class", "collaborators")})
        data["collaborators"] = collaborators
        data["officials"] = []
        party = self.obj(module, "responsibleParty")
        kind = self.code(party, "type", "officials")
        if kind is None and party.value is None or kind == "SPONSOR":
            return  # the lead sponsor, already carried
        role = _ctgov.RESPONSIBLE_PARTY_ROLES.get(kind or "", kind or _ctgov.UNTYPED_RESPONSIBLE_PARTY_ROLE)
        name = self.text(party, "investigatorFullName", "officials") or self.text(party, "oldNameTitle", "officials")
        if name:
            data["officials"].append({
                "name": name, "role": role, "is_person": True,
                "title": self.text(party, "investigatorTitle", "officials"),
                "affiliation": (self.text(party, "investigatorAffiliation", "officials")
                                or self.text(party, "oldOrganization", "officials")),
            })

    def _oversight(self, module: Fields, data: dict) -> None:
        flags = []
        if isinstance(module.value, dict):
            for key in module.value:
                value = self.flag(module, key, "oversight")
                if value is not None:
                    flags.append({"name": key, "value": value})
        data["oversight"] = flags

    def _design(self, design: Fields, data: dict) -> None:
        data["study_type"] = self.code(design, "studyType", "study_type")
        data["phases"] = self.texts(design, "phases", "phases", codes=True)
        info = self.obj(design, "designInfo")
        data["allocation"] = self.code(info, "allocation", "allocation")
        data["intervention_model"] = self.code(info, "interventionModel", "intervention_model")
        data["intervention_model_description"] = self.text(info, "interventionModelDescription",
                                                           "intervention_model_description")
        data["primary_purpose"] = self.code(info, "primaryPurpose", "primary_purpose")
        data["observational_model"] = self.code(info, "observationalModel", "observational_model")
        data["time_perspective"] = self.code(info, "timePerspective", "time_perspective")
        masking = self.obj(info, "maskingInfo")
        data["masking"] = self.code(masking, "masking", "masking")
        data["masking_description"] = self.text(masking, "maskingDescription", "masking_description")
        data["who_masked"] = self.texts(masking, "whoMasked", "who_masked", codes=True)
        enrollment = self.obj(design, "enrollmentInfo")
        data["enrollment"] = self.integer(enrollment, "count", "enrollment")
        data["enrollment_type"] = self.code(enrollment, "type", "enrollment_type")
        data["patient_registry"] = self.flag(design, "patientRegistry", "patient_registry")
        data["target_duration"] = self.text(design, "targetDuration", "target_duration")
        types = self.obj(design, "expandedAccessTypes")
        data["expanded_access_types"] = [name for name in _EXPANDED_ACCESS_TYPES
                                         if self.flag(types, name, "expanded_access_types")]
        bio_spec = self.obj(design, "bioSpec")
        data["bio_spec_retention"] = self.code(bio_spec, "retention", "bio_spec_retention")
        data["bio_spec_description"] = self.text(bio_spec, "description", "bio_spec_description")

    def _arms_interventions(self, module: Fields, data: dict) -> None:
        interventions = []
        for n, item in enumerate(self.items(module, "interventions", "interventions"), start=1):
            name = self.text(item, "name", "interventions")
            kind = self.code(item, "type", "interventions")
            if name is None:
                self.problems.append(error(f"intervention {n} ({item.path}) has no name", "interventions"))
                continue
            interventions.append({
                "type": kind, "name": name,
                "description": self.text(item, "description", "interventions"),
                "other_names": self.texts(item, "otherNames", "interventions"),
                "arms": self.texts(item, "armGroupLabels", "interventions"),
            })
        data["interventions"] = interventions
        names = {i["name"] for i in interventions}
        arms = []
        for n, item in enumerate(self.items(module, "armGroups", "arms"), start=1):
            label = self.text(item, "label", "arms")
            if label is None:
                self.problems.append(error(f"arm group {n} ({item.path}) has no label", "arms"))
                continue
            refs = [_ctgov.intervention_name(entry, names) for entry in self.texts(item, "interventionNames", "arms")]
            for ref in refs:
                if ref not in names:
                    self.problems.append(warning(f"arm group {label!r} names intervention {ref!r}, which is not "
                                                  "among the study's interventions", "arms"))
            arms.append({"label": label, "type": self.code(item, "type", "arms"),
                         "description": self.text(item, "description", "arms"), "interventions": refs})
        data["arms"] = arms

    def _outcomes(self, module: Fields, data: dict) -> None:
        outcomes = []
        for kind, key in _OUTCOME_LISTS:
            for n, item in enumerate(self.items(module, key, "outcomes"), start=1):
                name = self.text(item, "measure", "outcomes")
                if name is None:
                    self.problems.append(error(f"{kind} outcome {n} ({item.path}) has no measure", "outcomes"))
                    continue
                outcomes.append({"kind": kind, "name": name,
                                 "description": self.text(item, "description", "outcomes"),
                                 "time_frame": self.text(item, "timeFrame", "outcomes")})
        data["outcomes"] = outcomes

    def _eligibility(self, module: Fields, data: dict) -> None:
        criteria_text = take(module, "eligibilityCriteria")
        if criteria_text is not None and not isinstance(criteria_text, str):
            self._wrong(module, "eligibilityCriteria", criteria_text, "text", "eligibility_text")
            criteria_text = None
        data["eligibility_text"] = _ctgov.text(criteria_text)
        criteria, problems = split_criteria(criteria_text)
        data["criteria"] = criteria
        self.problems += problems
        data["healthy_volunteers"] = self.flag(module, "healthyVolunteers", "healthy_volunteers")
        data["sex"] = self.code(module, "sex", "sex")
        data["gender_based"] = self.flag(module, "genderBased", "gender_based")
        data["gender_description"] = self.text(module, "genderDescription", "gender_description")
        for key, field in (("minimumAge", "minimum_age"), ("maximumAge", "maximum_age")):
            value = _ctgov.age(self.text(module, key, field))
            if value is not None and not _ctgov.is_age(value):
                self.problems.append(warning(f"{module.path}.{key} {value!r} is not of the form '<n> Years'",
                                              field))
            data[field] = value
        data["std_ages"] = self.texts(module, "stdAges", "std_ages", codes=True)
        data["study_population"] = self.text(module, "studyPopulation", "study_population")
        data["sampling_method"] = self.code(module, "samplingMethod", "sampling_method")

    def _person(self, item: Fields, roles: dict[str, str], default_role: str, field: str) -> dict | None:
        """A contact or official: name, role, affiliation, phone (with extension), email."""
        role = self.code(item, "role", field)
        name = self.text(item, "name", field)
        phone = _ctgov.phone(self.text(item, "phone", field), self.text(item, "phoneExt", field))
        email = self.text(item, "email", field)
        if name is None:
            name = email or phone
            if name is None:
                self.problems.append(warning(f"{item.path}: a contact with no name, phone or email was left out",
                                              field))
                return None
        return {"name": name, "role": roles.get(role or "", role or default_role), "is_person": True,
                "affiliation": self.text(item, "affiliation", field), "phone": phone, "email": email}

    def _contacts_locations(self, module: Fields, data: dict) -> None:
        data["contacts"] = [p for item in self.items(module, "centralContacts", "contacts")
                            if (p := self._person(item, _ctgov.CONTACT_ROLES, _ctgov.DEFAULT_CONTACT_ROLE,
                                                  "contacts"))]
        data["officials"] += [p for item in self.items(module, "overallOfficials", "officials")
                              if (p := self._person(item, _ctgov.OFFICIAL_ROLES, "study-official", "officials"))]
        sites = []
        for item in self.items(module, "locations", "sites"):
            geo = self.obj(item, "geoPoint")
            sites.append({
                "facility": self.text(item, "facility", "sites"),
                "status": self.code(item, "status", "sites"),
                "city": self.text(item, "city", "sites"),
                "state": self.text(item, "state", "sites"),
                "zip": self.text(item, "zip", "sites"),
                "country": self.text(item, "country", "sites"),
                "latitude": self.number(geo, "lat", "sites"),
                "longitude": self.number(geo, "lon", "sites"),
                "contacts": [p for c in self.items(item, "contacts", "sites")
                             if (p := self._person(c, _ctgov.CONTACT_ROLES, _ctgov.DEFAULT_CONTACT_ROLE, "sites"))],
            })
        data["sites"] = sites

    def _references(self, module: Fields, data: dict) -> None:
        references = []
        for item in self.items(module, "references", "references"):
            pmid = self.code(item, "pmid", "references")
            references.append({"citation": self.text(item, "citation", "references"), "pmid": pmid,
                               "type": self.code(item, "type", "references")})
            for retraction in self.items(item, "retractions", "references"):
                references.append({"pmid": self.code(retraction, "pmid", "references"),
                                   "citation": self.text(retraction, "source", "references"),
                                   "label": f"Retraction of PMID {pmid}" if pmid else "Retraction",
                                   "type": "retraction"})
        for item in self.items(module, "seeAlsoLinks", "references"):
            references.append({"url": self.text(item, "url", "references"),
                               "label": self.text(item, "label", "references"), "type": "link"})
        for item in self.items(module, "availIpds", "references"):
            kind = self.text(item, "type", "references")
            ident = self.text(item, "id", "references")
            comment = self.text(item, "comment", "references")
            label = " ".join(p for p in (kind, f"(ID {ident})" if ident else None) if p)
            if comment:
                label = f"{label}: {comment}" if label else comment
            references.append({"url": self.text(item, "url", "references"), "label": label or None, "type": "ipd"})
        data["references"] = references

    def _ipd_sharing(self, module: Fields, data: dict) -> None:
        if not isinstance(module.value, dict):
            data["ipd_sharing"] = None
            return
        data["ipd_sharing"] = {
            "sharing": self.code(module, "ipdSharing", "ipd_sharing"),
            "description": self.text(module, "description", "ipd_sharing"),
            "info_types": self.texts(module, "infoTypes", "ipd_sharing", codes=True),
            "time_frame": self.text(module, "timeFrame", "ipd_sharing"),
            "access_criteria": self.text(module, "accessCriteria", "ipd_sharing"),
            "url": self.text(module, "url", "ipd_sharing"),
        }

    def _meshes(self, module: Fields, field: str, key: str = "meshes") -> list[dict]:
        """The MeSH descriptors of a browse module's list ``key``, ids in NLM's form
        (``mesh.json``: ``D000001943`` -> ``D001943``)."""
        out = []
        for item in self.items(module, key, field):
            ident = self.code(item, "id", field)
            term = self.text(item, "term", field)
            if ident and term:
                out.append({"id": mesh_descriptor_id(ident), "term": term})
        return out
