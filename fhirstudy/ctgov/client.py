"""A client for the ClinicalTrials.gov API v2 (``/studies``, ``/studies/{nctId}``, ``/version``).

    api = CtgovClient()                                  # https://clinicaltrials.gov/api/v2, or $FHIRSTUDY_CTGOV_API
    api.version()                 -> {"apiVersion": "2.0.3", "dataTimestamp": "2026-11-30T08:00:00"}
    api.study("NCT01234567")      -> the study (a dict), or None
    for page in api.pages({"query.cond": "breast cancer"}):   # Page(studies, next_token, total)
        ...

Paging follows the API's rule: every page after the first repeats the first page's parameters
(only ``pageToken``, ``pageSize`` and ``countTotal`` may differ); ``countTotal`` is asked on the
first page only, where the answer carries ``totalCount``. ``pages(..., token=...)`` resumes a
listing from a saved token.

Politeness and failures: one ``requests.Session`` (push's, :func:`fhirstudy.push.client.make_session`)
whose adapter retries 429, 502, 503 and 504 with exponential backoff, honouring ``Retry-After``; an
answer cut off mid-body (a dropped connection) is asked again here, a few times, with backoff; at
most one request every ``interval`` seconds (default 1, the rate ClinicalTrials.gov asks of
scripts); a User-Agent naming fhirstudy and its version. Errors are fhirstudy's
(:mod:`fhirstudy.errors`: TransportError, RemoteRejected, RemoteError), one line each.
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import orjson
import requests

from .. import __version__
from ..errors import RemoteError, TransportError
from ..push.client import check_base_url, make_session, raise_for_status, translate_errors

DEFAULT_API = "https://clinicaltrials.gov/api/v2"
API_ENV = "FHIRSTUDY_CTGOV_API"
DEFAULT_INTERVAL = 1.0         # seconds between requests at least
MAX_PAGE_SIZE = 1000           # the API coerces larger pages down to this
DEFAULT_TIMEOUT = (10.0, 120.0)
BODY_RETRIES = 4               # answers cut off mid-body, asked again (the session retries the rest)
BODY_BACKOFF = 0.5             # seconds: 0.5, 1, 2, 4
USER_AGENT = f"fhirstudy/{__version__} (+https://github.com/fhirstudy/fhirstudy; clinical trials to FHIR)"
NCT_ID = re.compile(r"^NCT\d{8}$")
_NOT_REPEATED = frozenset({"pageToken", "pageSize", "countTotal"})


@dataclass(frozen=True)
class Page:
    """One page of ``/studies``: its studies, the token of the next page (None on the last), the
    total number of studies (on the first page, when ``countTotal`` was asked), and the token
    that asked for this page (None for the first)."""

    studies: list[dict]
    next_token: str | None
    total: int | None
    token: str | None


def api_url(url: str | None = None) -> str:
    """The API base URL: ``url``, else ``$FHIRSTUDY_CTGOV_API``, else ClinicalTrials.gov's."""
    from .. import config

    return check_base_url(url or config.value("CTGOV_API") or DEFAULT_API, "the ClinicalTrials.gov API URL").rstrip("/")


class CtgovClient:
    """The API at ``base_url`` (see the module); ``interval`` seconds between requests at least."""

    def __init__(self, base_url: str | None = None, *, session: requests.Session | None = None,
                 interval: float = DEFAULT_INTERVAL, timeout=DEFAULT_TIMEOUT, retries: int = 8,
                 backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep):
        self.base_url = api_url(base_url)
        self.session = session if session is not None else make_session(retries=retries, backoff=backoff)
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        self.interval, self.timeout, self.sleep = interval, timeout, sleep
        self.requests = 0          # requests sent (retries by the session not counted)
        self._last = float("-inf")
        self._lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "CtgovClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the three endpoints ---------------------------------------------------------------------

    def version(self) -> dict:
        """``/version``: ``apiVersion`` and ``dataTimestamp`` (the data's UTC time, no zone)."""
        body = self._get("/version", {})
        if not isinstance(body, dict) or not isinstance(body.get("apiVersion"), str):
            raise RemoteError(f"{self.base_url}/version: not an API version answer")
        return body

    def study(self, nct_id: str) -> dict | None:
        """``/studies/{nctId}``: the study, or None when the registry does not hold it."""
        try:
            body = self._get(f"/studies/{quote(nct_id, safe='')}", {})
        except RemoteError as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise
        return body

    def pages(self, params: dict[str, str], page_size: int = MAX_PAGE_SIZE, count_total: bool = True,
              token: str | None = None) -> Iterator[Page]:
        """The pages of ``/studies`` for ``params`` (the API's query names), from the first, or from
        ``token`` (a saved ``next_token``) on."""
        fixed = {k: v for k, v in params.items() if k not in _NOT_REPEATED}
        size = max(1, min(page_size, MAX_PAGE_SIZE))
        first = token is None
        while True:
            query = {**fixed, "pageSize": str(size)}
            if token is not None:
                query["pageToken"] = token
            elif count_total:
                query["countTotal"] = "true"
            body = self._get("/studies", query)
            if not isinstance(body, dict) or not isinstance(body.get("studies", []), list):
                raise RemoteError(f"{self.base_url}/studies: not a page of studies")
            following = body.get("nextPageToken") or None
            total = body.get("totalCount") if first else None
            yield Page(body.get("studies") or [], following, total if isinstance(total, int) else None, token)
            if following is None:
                return
            if following == token:
                raise RemoteError(f"{self.base_url}/studies: the API gave the same page token twice")
            token, first = following, False

    def studies(self, params: dict[str, str], page_size: int = MAX_PAGE_SIZE) -> Iterator[dict]:
        """Every study of ``/studies`` for ``params``, page after page."""
        for page in self.pages(params, page_size, count_total=False):
            yield from page.studies

    # -- one request -----------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, str]):
        url = f"{self.base_url}{path}"
        for attempt in range(BODY_RETRIES + 1):
            self._wait_turn()
            try:
                with translate_errors(url, self.session):
                    response = self.session.get(url, params=params, timeout=self.timeout)
                    content = response.content      # a connection dropped mid-body raises here
            except TransportError as exc:
                if attempt == BODY_RETRIES or _unreachable(exc):
                    raise
                self.sleep(BODY_BACKOFF * 2 ** attempt)
                continue
            raise_for_status(response)
            try:
                return orjson.loads(content)
            except orjson.JSONDecodeError:
                raise RemoteError(f"GET {response.url}: the answer is not JSON", url=url) from None
        raise AssertionError("unreachable")

    def _wait_turn(self) -> None:
        """Keep at least ``interval`` seconds between two requests of this client."""
        with self._lock:
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                self.sleep(wait)
            self._last = time.monotonic()
            self.requests += 1


def _unreachable(exc: TransportError) -> bool:
    """True when no connection could be made at all (the session has retried that already:
    asking again here would only make the user wait), not when an answer broke off."""
    return str(exc).startswith("cannot reach ")
