"""Studies from the API as the pipeline's records: each one an API v2 study object read by the
``ctgov-json`` reader (:func:`fhirstudy.sources.ctgov_json.convert`), placed at its URL
(``<api>/studies/NCT01234567``, record 1), so that a failure says which study and the
Provenance names the NCT id.
"""
from __future__ import annotations

from ..sources import RawRecord, ctgov_json


def nct_of(study) -> str | None:
    """The NCT id of an API v2 study object (None when it has none)."""
    if not isinstance(study, dict):
        return None
    nct = ((study.get("protocolSection") or {}).get("identificationModule") or {}).get("nctId")
    return nct if isinstance(nct, str) else None


def last_update_of(study) -> str | None:
    """The study's ``lastUpdatePostDateStruct.date`` (YYYY-MM-DD), when it has one."""
    if not isinstance(study, dict):
        return None
    status = (study.get("protocolSection") or {}).get("statusModule") or {}
    date = (status.get("lastUpdatePostDateStruct") or {}).get("date")
    return date if isinstance(date, str) else None


def raw_record(study, base_url: str, number: int | None = None, accounting: bool = False) -> RawRecord:
    """One API study as the reader sees it (``number``: its place in the listing, for messages
    only when it has no NCT id)."""
    nct = nct_of(study)
    where = f"{base_url}/studies/{nct}" if nct else f"{base_url}/studies (study {number or '?'} of the listing)"
    data, problems, unmapped = ctgov_json.convert(study, accounting)
    return RawRecord(where, 1, ctgov_json.FORMAT, data, tuple(problems), tuple(unmapped))
