"""A small FHIR REST client for pushing: one ``requests.Session``, retries for what is safe to repeat.

    client = FhirClient("https://fhir.hospital.example/r4", token="...")      # or auth=SmartBackendAuth(...)
    client.fhir_version()                   -> "4.0" | "5.0"  (from /metadata)
    client.transaction(bundle)              -> the transaction-response Bundle
    client.search("ResearchStudy", {"identifier": "https://clinicaltrials.gov|NCT01"}) -> [resource, ...]
    client.read("Provenance", "x")          -> resource | None

The transport is injectable: pass ``session=`` (tests mount adapters or point it at a local
server). Retries (urllib3 ``Retry`` on the session's adapter): connection errors, and 429, 502,
503, 504 with exponential backoff and jitter, honouring ``Retry-After``. POST is retried too,
because every POST this client sends is safe to repeat: transaction Bundles made of conditional
entries (``ifNoneExist``, ``PUT Type?identifier=``, ``ifMatch``) and read-only batches.
requests' exceptions are translated to :mod:`fhirstudy.errors` here and nowhere else.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urljoin

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import (AuthenticationFailed, PushError, RemoteError, RemoteRejected, TransportError,
                      UnsupportedServer)

FHIR_JSON = "application/fhir+json"
RETRY_STATUSES = (429, 502, 503, 504)
# Every method we send is safe to repeat (see the module docstring); connect errors are retried
# whatever the method, since nothing reached the server.
RETRY_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"})
DEFAULT_RETRIES = 8
DEFAULT_BACKOFF = 0.2          # seconds: 0.2, 0.4, 0.8, ... (+ jitter), capped at BACKOFF_MAX
BACKOFF_MAX = 10.0
BACKOFF_JITTER = 0.2
DEFAULT_TIMEOUT = (10.0, 300.0)  # connect, read: a large transaction can take a while
VERSIONS = {"4.0": "4.0", "4.3": "4.0", "5.0": "5.0"}  # fhirVersion prefix -> what we send (R4B reads R4)

# The one boundary where requests' exceptions become ours: first match wins (subclasses first).
_TRANSLATIONS: tuple[tuple[type[Exception], type[PushError], str], ...] = (
    (requests.exceptions.SSLError, TransportError, "TLS handshake failed"),
    (requests.exceptions.ConnectTimeout, TransportError, "timed out connecting"),
    (requests.exceptions.ReadTimeout, TransportError, "timed out waiting for the answer"),
    (requests.exceptions.ConnectionError, TransportError, "connection failed"),
    (requests.exceptions.ChunkedEncodingError, TransportError, "connection dropped mid-answer"),
    (requests.exceptions.ContentDecodingError, TransportError, "answer could not be decoded"),
    (requests.exceptions.RetryError, TransportError, "gave up after retries"),
    (requests.exceptions.InvalidURL, PushError, "invalid URL"),
    (requests.exceptions.RequestException, PushError, "request failed"),
)


def retry_policy(total: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF) -> Retry:
    """The retry policy of the push session (see the module docstring)."""
    return Retry(total=total, connect=total, read=total, status=total, other=total,
                 backoff_factor=backoff, backoff_max=BACKOFF_MAX, backoff_jitter=BACKOFF_JITTER,
                 status_forcelist=RETRY_STATUSES, allowed_methods=RETRY_METHODS,
                 respect_retry_after_header=True, raise_on_status=False)


def make_session(retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
                 pool_size: int = 10) -> requests.Session:
    """A session whose http and https adapters retry with :func:`retry_policy`."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry_policy(retries, backoff), pool_connections=pool_size,
                          pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Re-raise requests' exceptions as fhirstudy errors (the table ``_TRANSLATIONS``)."""
    try:
        yield
    except requests.exceptions.RequestException as exc:
        for source, target, what in _TRANSLATIONS:
            if isinstance(exc, source):
                raise target(f"{what}: {url}: {exc}", url=url, **({"cause": exc} if target is TransportError else {})) from exc
        raise  # pragma: no cover - RequestException is the last row


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` on every request."""

    def __init__(self, token: str):
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def _outcome(response: requests.Response) -> dict | None:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" else None


def outcome_text(outcome: dict | None) -> str:
    """The diagnostics of an OperationOutcome's issues, joined (for messages)."""
    if not outcome:
        return ""
    return "; ".join(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code", "")
                     for i in outcome.get("issue", []))


def raise_for_status(response: requests.Response) -> None:
    """RemoteRejected (4xx), AuthenticationFailed (401/403) or RemoteError (5xx) for an error answer."""
    if response.status_code < 400:
        return
    outcome = _outcome(response)
    text = outcome_text(outcome) or response.text[:500]
    message = f"{response.request.method} {response.url}: {response.status_code} {response.reason}: {text}"
    kind = (AuthenticationFailed if response.status_code in (401, 403) else
            RemoteRejected if response.status_code < 500 else RemoteError)
    raise kind(message, url=response.url, status=response.status_code, outcome=outcome, response=response)


class FhirClient:
    """A FHIR server at ``base_url``, spoken to through ``session`` (made with
    :func:`make_session` when not given); ``token`` or ``auth`` authenticates every request."""

    def __init__(self, base_url: str, session: requests.Session | None = None, token: str | None = None,
                 auth: requests.auth.AuthBase | None = None, timeout: Any = DEFAULT_TIMEOUT):
        self.base_url = base_url.rstrip("/") + "/"
        self.session = session if session is not None else make_session()
        self.auth = auth if auth is not None else BearerAuth(token) if token else None
        self.timeout = timeout
        self._metadata: dict | None = None

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (relative to the base) or ``path`` itself when absolute."""
        return urljoin(self.base_url, path.lstrip("/")) if "://" not in path else path

    def request(self, method: str, path: str, body: Any = None, params: Any = None,
                headers: dict | None = None) -> requests.Response:
        """Send one request; a fhirstudy error for a transport failure or an error status."""
        url = self.url(path)
        all_headers = {"Accept": FHIR_JSON, **({"Content-Type": FHIR_JSON} if body is not None else {}),
                       **(headers or {})}
        data = orjson.dumps(body) if body is not None else None
        with translate_errors(url):
            response = self.session.request(method, url, data=data, params=params, headers=all_headers,
                                            auth=self.auth, timeout=self.timeout)
        raise_for_status(response)
        return response

    def json(self, method: str, path: str, body: Any = None, params: Any = None,
             headers: dict | None = None) -> dict:
        """Send one request and decode its JSON answer."""
        response = self.request(method, path, body, params, headers)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise RemoteError(f"{method} {response.url}: the answer is not JSON", url=response.url,
                              status=response.status_code, response=response) from exc

    def metadata(self) -> dict:
        """The server's CapabilityStatement (fetched once)."""
        if self._metadata is None:
            try:
                self._metadata = self.json("GET", "metadata")
            except RemoteRejected as exc:
                raise UnsupportedServer(f"{self.base_url} has no usable /metadata: {exc}", url=exc.url) from exc
        return self._metadata

    def fhir_version(self) -> str:
        """"4.0" or "5.0": the FHIR version to send, from the CapabilityStatement's fhirVersion."""
        version = str(self.metadata().get("fhirVersion", ""))
        sent = VERSIONS.get(".".join(version.split(".")[:2]))
        if sent is None:
            raise UnsupportedServer(f"{self.base_url} speaks FHIR {version or '(no fhirVersion)'}; "
                                    f"fhirstudy sends R4 (4.0) or R5 (5.0)", url=self.base_url)
        return sent

    def supports_conditional(self, resource_type: str) -> bool:
        """Whether the CapabilityStatement offers conditional create and update on a type."""
        for rest in self.metadata().get("rest", []):
            for res in rest.get("resource", []):
                if res.get("type") == resource_type:
                    return bool(res.get("conditionalCreate")) and bool(res.get("conditionalUpdate"))
        return False

    def transaction(self, bundle: dict) -> dict:
        """POST a transaction (or batch) Bundle to the base; the response Bundle."""
        return self.json("POST", "", bundle)

    def read(self, resource_type: str, resource_id: str) -> dict | None:
        """The current resource, or None when the server has none (404/410)."""
        try:
            return self.json("GET", f"{resource_type}/{resource_id}")
        except RemoteRejected as exc:
            if exc.status in (404, 410):
                return None
            raise

    def search(self, resource_type: str, params: dict | list) -> list[dict]:
        """Every match of a search (following ``next`` links), as resources."""
        out: list[dict] = []
        page = self.json("GET", resource_type, params=params)
        while True:
            out.extend(e["resource"] for e in page.get("entry", []) if "resource" in e
                       and (e.get("search") or {}).get("mode", "match") == "match")
            nxt = next((lk["url"] for lk in page.get("link", []) if lk.get("relation") == "next"), None)
            if not nxt:
                return out
            page = self.json("GET", nxt)

    def put(self, resource: dict, path: str | None = None) -> dict:
        """PUT a resource (to ``Type/id``, or to ``path`` such as ``Type?url=...``)."""
        return self.json("PUT", path or f"{resource['resourceType']}/{resource['id']}", resource)

    def close(self) -> None:
        """Close the session's pooled connections."""
        self.session.close()
