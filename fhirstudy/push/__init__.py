"""Push trials into other FHIR servers (R4 or R5), idempotently and resumably.

    from fhirstudy.push import FhirClient, Journal, push_trials
    client = FhirClient("https://fhir.hospital.example/r4", token="...")
    report = push_trials(client, trials, journal=Journal("push.sqlite"))

``client`` (the HTTP client and its retries, ``batch_search``), ``auth`` (bearer, SMART Backend
Services), ``prepare`` (a trial made ready: R4, identifiers, hash), ``plan`` (what the store holds,
the transaction entries), ``report`` (results), ``push`` (the run: chunks, sending, journal),
``journal`` and ``stored`` (the trials a fhirstudy repository holds, page by page).  May import
requests, fhirstudy.mappers, fhirstudy.terminology, fhirstudy.errors; ``stored`` also
fhirstudy.service and fhirstudy.store; never Flask or server/.
"""
from .auth import BearerAuth, SmartBackendAuth
from .client import FhirClient, make_session
from .journal import Journal
from .push import PushReport, TrialResult, install_search_parameters, prepare_trial, push_trials

__all__ = ["BearerAuth", "FhirClient", "Journal", "PushReport", "SmartBackendAuth", "TrialResult",
           "install_search_parameters", "make_session", "prepare_trial", "push_trials"]
