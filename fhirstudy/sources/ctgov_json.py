"""Reader of ClinicalTrials.gov API v2 JSON (``ctgov-json``): study records as the registry's REST
API and website give them.

Four containers, told apart from the first bytes of the file:

    a single study      {"protocolSection": ..., "derivedSection": ..., "hasResults": ...}
    an API page         {"studies": [...], "nextPageToken": ...}   (/api/v2/studies)
    a website download  [{study}, {study}, ...]
    NDJSON              one study object a line

Pages and arrays are streamed with ijson (one study in memory at a time), NDJSON line by line;
only a single study is parsed whole. Every ``protocolSection`` field is carried into the Trial or
is on the documented ignore list (``mappings/ctgov-ignored-fields.json``, key ``ctgov-json``);
``derivedSection`` gives the MeSH terms; everything else left over (``resultsSection``,
``annotationSection``, ``documentSection``) is reported as unmapped. Field names in this module are
the API's own (``overallStatus``), so they can be looked up in its documentation.

Design choices:

- ``armGroups[].interventionNames`` ("Drug: Palbociclib") lose their type label, so an arm names its
  interventions exactly as ``Intervention.name`` does.
- ``Intervention.components`` stay empty: the registry already lists one intervention per product.
- Central and facility contacts get the FHIR role ``recruitment-contact`` (ClinicalTrials.gov
  defines them as the people who answer enrollment questions).
- ``references[].retractions`` become references of type ``retraction`` (the retraction notice's
  PMID and source), so a retracted citation does not look sound downstream.
- ``availIpds`` become references of type ``ipd``, ``seeAlsoLinks`` of type ``link``.
- Wrong JSON types (``enrollmentInfo.count: "abc"``) are errors naming the source path and the
  Trial field; enumerated values are checked by the Trial schema.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, BinaryIO

import ijson
import orjson

from ..errors import Problem
from . import _ctgov
from ._boundary import one_record
from ._criteria import split_criteria
from ._fields import Fields, ignored_fields

FORMAT = "ctgov-json"

_STUDY_KEYS = frozenset({"protocolSection", "resultsSection", "annotationSection", "documentSection",
                         "derivedSection", "hasResults"})
_PAGE_KEYS = frozenset({"studies", "nextPageToken", "totalCount"})
_FIRST_KEY = re.compile(r'^\s*(\[\s*)?\{\s*"([^"\\]+)"\s*:')
_FIRST_KEY_BYTES = re.compile(rb'^\s*(\[\s*)?\{\s*"([^"\\]+)"\s*:')
_BOM = b"\xef\xbb\xbf"
HEAD_BYTES = 65536  # bytes read to tell the container apart
SNIPPET = 60  # characters of a bad value quoted in a problem

_OUTCOME_LISTS = (("primary", "primaryOutcomes"), ("secondary", "secondaryOutcomes"), ("other", "otherOutcomes"))
_EXPANDED_ACCESS_TYPES = ("individual", "intermediate", "treatment")


def detect(head: str) -> bool:
    """True when the text is a JSON object or array whose first key is one of an API v2 study's
    sections (``protocolSection``, ...) or of an ``/api/v2/studies`` page (``studies``, ...)."""
    match = _FIRST_KEY.match(head)
    if not match:
        return False
    key = match[2]
    return key in _STUDY_KEYS or (not match[1] and key in _PAGE_KEYS)


def read_stream(stream: BinaryIO, file: str) -> Iterator[tuple[dict | None, list[Problem], list[str]]]:
    """The studies of an API v2 JSON file, one at a time, each as a ``TrialSchema`` dict (without
    provenance), the problems found, and the source fields that did not reach the Trial.

    A study that cannot be parsed is yielded as ``(None, [error], [])``: an NDJSON line on its own
    (the next lines go on), or in an array or page the break itself, after which the rest of the
    file cannot be read.
    """
    head = stream.read(HEAD_BYTES).removeprefix(_BOM)
    replay = _Replay(head, stream)
    match = _FIRST_KEY_BYTES.match(head)
    if match and match[1]:
        yield from _stream_items(replay, "item", "JSON array")
    elif match and match[2].decode() in _PAGE_KEYS:
        yield from _stream_items(replay, "studies.item", "API page")
    else:
        yield from _objects(replay)


@one_record
def convert(study: Any) -> tuple[dict | None, list[Problem], list[str]]:
    """One API v2 study object -> (``TrialSchema`` dict without provenance, problems, unmapped
    source paths). Never raises for bad input: a study it cannot convert gives ``None`` data with
    an error problem."""
    if not isinstance(study, dict):
        return None, [_error(f"a study must be a JSON object, not {_json_type(study)}", None)], []
    return _Study(study).convert()


class _Replay:
    """A binary stream whose first bytes were read already: serves them again, then the rest."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._stream.read(size)
        if size is None or size < 0:
            out, self._head = self._head + self._stream.read(), b""
        else:
            out, self._head = self._head[:size], self._head[size:]
        return out

    def readline(self) -> bytes:
        if not self._head:
            return self._stream.readline()
        end = self._head.find(b"\n")
        if end >= 0:
            out, self._head = self._head[:end + 1], self._head[end + 1:]
            return out
        out, self._head = self._head, b""
        return out + self._stream.readline()


def _stream_items(stream: _Replay, prefix: str, container: str) -> Iterator[tuple]:
    count = 0
    items = ijson.items(stream, prefix, use_float=True, multiple_values=True)
    while True:
        try:
            study = next(items)
        except StopIteration:
            break
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            yield None, [_error(f"invalid JSON after study {count} of the {container} ({_ijson_reason(exc)}): "
                                "the rest of the file cannot be read", None)], []
            return
        count += 1
        yield convert(study)
    if count == 0:
        yield None, [_error(f"the {container} holds no study", None)], []


def _objects(stream: _Replay) -> Iterator[tuple]:
    """A single study object (possibly pretty-printed), or NDJSON (one study a line)."""
    lineno, first = _next_line(stream, 0)
    if first is None:
        yield None, [_error("no JSON study in this file", None)], []
        return
    study, exc = _loads(first)
    if exc is None and isinstance(study, dict):
        yield _from_line(lineno, study, None)  # a study on its own line: NDJSON (a one-line file too)
        yield from _ndjson(stream, lineno)
        return
    second_lineno, second = _next_line(stream, lineno)
    if second is not None and second.lstrip().startswith(b"{"):  # a bad first line of NDJSON
        yield _from_line(lineno, study, exc)
        yield _from_line(second_lineno, *_loads(second))
        yield from _ndjson(stream, second_lineno)
        return
    study, exc = _loads(first + (second or b"") + stream.read())  # one study, pretty-printed
    yield convert(study) if exc is None else (None, [_error(f"not valid JSON: {exc}", None)], [])


def _ndjson(stream: _Replay, lineno: int) -> Iterator[tuple]:
    while True:
        lineno, line = _next_line(stream, lineno)
        if line is None:
            return
        yield _from_line(lineno, *_loads(line))


def _next_line(stream: _Replay, lineno: int) -> tuple[int, bytes | None]:
    """The next non-blank line after line ``lineno`` and its number, or None at the end."""
    while True:
        line = stream.readline()
        if not line:
            return lineno, None
        lineno += 1
        if line.strip():
            return lineno, line


def _from_line(lineno: int, study: Any, exc: Exception | None) -> tuple:
    """The record of one NDJSON line (parsed, or the parse error)."""
    if exc is not None:
        return None, [_error(f"line {lineno}: not valid JSON ({exc}); the next lines are read on", None)], []
    data, problems, unmapped = convert(study)
    if data is None:
        problems = [Problem(f"line {lineno}: {p.reason}", p.field, severity=p.severity) for p in problems]
    return data, problems, unmapped


def _loads(raw: bytes) -> tuple[Any, Exception | None]:
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as exc:
        return None, exc


def _ijson_reason(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and "(right here)" not in line]
    if len(lines) > 1:
        return f"{lines[0]} near {lines[1]!r}"
    return lines[0] if lines else type(exc).__name__


def _error(reason: str, field: str | None) -> Problem:
    return Problem(reason, field=field, severity="error")


def _warning(reason: str, field: str | None) -> Problem:
    return Problem(reason, field=field, severity="warning")


def _take(node: Fields, key: str) -> Any:
    """The value at a single ``key`` of a node, marked used (``Fields.get`` without a node object per
    leaf: the reader's hot path)."""
    value = node.value.get(key) if isinstance(node.value, dict) else None
    if value is not None:
        node.mark(key)
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "text", list: "an array", dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SNIPPET else text[:SNIPPET - 1] + "…"


class _Study:
    """One study being converted: the read-tracking view of it and the problems found so far."""

    def __init__(self, study: dict):
        self.root = Fields(study)
        self.problems: list[Problem] = []

    # Typed reads: a value of the wrong JSON type is an error naming the source path and the Trial
    # field, and reads as absent, so nothing downstream sees it.

    def _wrong(self, node: Fields, key: str, value: Any, expected: str, field: str) -> None:
        path = node.node(key).path
        self.problems.append(_error(f"{path}: {_quote(value)} is {_json_type(value)}, expected {expected}", field))

    def text(self, node: Fields, key: str, field: str) -> str | None:
        value = _take(node, key)
        if value is None:
            return None
        if not isinstance(value, str):
            self._wrong(node, key, value, "text", field)
            return None
        return _ctgov.text(value)

    def code(self, node: Fields, key: str, field: str) -> str | None:
        """An enumerated value, as given (the Trial schema checks the values it knows)."""
        value = _take(node, key)
        if value is None:
            return None
        if not isinstance(value, str):
            self._wrong(node, key, value, "text", field)
            return None
        return value.strip() or None

    def flag(self, node: Fields, key: str, field: str) -> bool | None:
        value = _take(node, key)
        if value is None or isinstance(value, bool):
            return value
        self._wrong(node, key, value, "true or false", field)
        return None

    def integer(self, node: Fields, key: str, field: str) -> int | None:
        value = _take(node, key)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self._wrong(node, key, value, "a whole number", field)
            return None
        return value

    def number(self, node: Fields, key: str, field: str) -> float | None:
        value = _take(node, key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self._wrong(node, key, value, "a number", field)
            return None
        return float(value)

    def texts(self, node: Fields, key: str, field: str, *, codes: bool = False) -> list[str]:
        """A list of text (or of enumerated values), empty entries dropped."""
        value = _take(node, key)
        if value is None:
            return []
        if not isinstance(value, list):
            self._wrong(node, key, value, "an array of text", field)
            return []
        out = []
        for item in value:
            if not isinstance(item, str):
                self._wrong(node, key, item, "text", field)
                continue
            item = item.strip() if codes else _ctgov.text(item)
            if item:
                out.append(item)
        return out

    def items(self, node: Fields, key: str, field: str) -> list[Fields]:
        """The objects of the array at ``key`` (an entry of another type is an error)."""
        value = node.node(key).value
        if value is None:
            return []
        if not isinstance(value, list):
            self._wrong(node, key, value, "an array", field)
            node.mark(key)
            return []
        out = []
        for item in node.nodes(key):
            if isinstance(item.value, dict):
                out.append(item)
            elif item.value is not None:
                self._wrong(node, key, item.value, "an object", field)
                node.mark(key)
        return out

    def obj(self, node: Fields, key: str, field: str | None = None) -> Fields:
        """The object at ``key`` (a module, a struct), to read from; another type is an error and
        reads as absent."""
        child = node.node(key)
        if child.value is not None and not isinstance(child.value, dict):
            self._wrong(node, key, child.value, "an object", field)
            node.mark(key)
            return Fields(None, child.path, set())
        return child

    def date(self, node: Fields, key: str, field: str) -> dict | None:
        """A (Partial)DateStruct: ``{"date", "type"}``; the type may be absent."""
        struct = self.obj(node, key, field)
        date = self.code(struct, "date", field)
        if date is None:
            return None
        return {"date": date, "type": self.code(struct, "type", field)}

    # The study, module by module.

    def convert(self) -> tuple[dict | None, list[Problem], list[str]]:
        protocol = self.root.node("protocolSection")
        if not isinstance(protocol.value, dict):
            reason = ("no protocolSection: not a ClinicalTrials.gov API v2 study" if protocol.value is None else
                      f"protocolSection is {_json_type(protocol.value)}, expected an object")
            return None, [_error(reason, None)], self.root.unmapped(ignored_fields(FORMAT))
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
        data["condition_meshes"] = self._meshes(self.obj(derived, "conditionBrowseModule"), "condition_meshes")
        data["intervention_meshes"] = self._meshes(self.obj(derived, "interventionBrowseModule"),
                                                   "intervention_meshes")
        data["has_results"] = self.flag(self.root, "hasResults", "has_results")
        data["_source_date"] = (data.get("last_update_date")
                                or self.code(self.obj(derived, "miscInfoModule"), "versionHolder", "last_update_date"))
        return data, self.problems, self.root.unmapped(ignored_fields(FORMAT))

    def _identification(self, ident: Fields, data: dict) -> None:
        identifiers = []
        nct = self.code(ident, "nctId", "identifiers")
        if nct:
            identifiers.append({"value": nct, "kind": "nct"})
        elif not any(p.field == "identifiers" for p in self.problems):
            self.problems.append(_error(f"no nctId ({ident.path}.nctId): a ClinicalTrials.gov study needs its "
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
            self.problems.append(_error(f"no briefTitle ({ident.path}.briefTitle): a study needs a title",
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
                self.problems.append(_error(f"intervention {n} ({item.path}) has no name", "interventions"))
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
                self.problems.append(_error(f"arm group {n} ({item.path}) has no label", "arms"))
                continue
            refs = [_ctgov.intervention_name(entry, names) for entry in self.texts(item, "interventionNames", "arms")]
            for ref in refs:
                if ref not in names:
                    self.problems.append(_warning(f"arm group {label!r} names intervention {ref!r}, which is not "
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
                    self.problems.append(_error(f"{kind} outcome {n} ({item.path}) has no measure", "outcomes"))
                    continue
                outcomes.append({"kind": kind, "name": name,
                                 "description": self.text(item, "description", "outcomes"),
                                 "time_frame": self.text(item, "timeFrame", "outcomes")})
        data["outcomes"] = outcomes

    def _eligibility(self, module: Fields, data: dict) -> None:
        criteria_text = _take(module, "eligibilityCriteria")
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
                self.problems.append(_warning(f"{module.path}.{key} {value!r} is not of the form '<n> Years'",
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
                self.problems.append(_warning(f"{item.path}: a contact with no name, phone or email was left out",
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

    def _meshes(self, module: Fields, field: str) -> list[dict]:
        out = []
        for item in self.items(module, "meshes", field):
            ident = self.code(item, "id", field)
            term = self.text(item, "term", field)
            if ident and term:
                out.append({"id": ident, "term": term})
        return out
