"""Push trials into other FHIR servers (R4 or R5), idempotently and resumably.

    from fhirstudy.push import FhirClient, Journal, push_trials
    client = FhirClient("https://fhir.hospital.example/r4", token="...")
    report = push_trials(client, trials, journal=Journal("push.sqlite"))

``client`` (the HTTP client and its retries), ``auth`` (bearer, SMART Backend Services),
``push`` (the run: version, chunks, conditional transactions, report) and ``journal``.
"""
from .auth import BearerAuth, SmartBackendAuth
from .client import FhirClient, make_session
from .journal import Journal
from .push import PushReport, TrialResult, install_search_parameters, prepare_trial, push_trials

__all__ = ["BearerAuth", "FhirClient", "Journal", "PushReport", "SmartBackendAuth", "TrialResult",
           "install_search_parameters", "make_session", "prepare_trial", "push_trials"]
