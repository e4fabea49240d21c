"""A small FHIR REST client for pushing: one ``requests.Session``, retries for what is safe to repeat.

    client = FhirClient("https://fhir.hospital.example/r4", token="...")      # or auth=SmartBackendAuth(...)
    client.fhir_version()                   -> "4.0" | "5.0"  (from /metadata)
    client.transaction(bundle)              -> the transaction-response Bundle
    client.search("ResearchStudy", {"identifier": "https://clinicaltrials.gov|NCT01"}) -> [resource, ...]
    client.read("Provenance", "x")          -> resource | None

The transport is injectable: pass ``session=`` (tests mount adapters or point it at a local
server). Retries (urllib3 ``Retry`` on the session's adapter): connection failures a few times
(``DEFAULT_CONNECT_RETRIES``: nothing listening is said at once, not after half a minute), and
dropped answers and 429, 502, 503, 504 more often, with exponential backoff and jitter, honouring
``Retry-After``. POST is retried too, because every POST this client sends is safe to repeat:
transaction Bundles made of conditional entries (``ifNoneExist``, ``PUT Type?identifier=``,
``ifMatch``) and read-only batches.

Credentials stay with the origin (scheme, host, port) of the base URL: redirects are followed
here, not by requests, and a hop or a ``next`` link to another origin is sent without them.

requests' exceptions are translated to :mod:`fhirstudy.errors` here and nowhere else
(:func:`translate_errors`, two lookup tables); their urllib3 text never reaches a message.
"""
from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import orjson
import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import (AuthenticationFailed, FhirStudyError, PushError, RemoteError, RemoteRejected,
                      TransportError, UnsupportedServer)
from ..limits import parse_integer

FHIR_JSON = "application/fhir+json"
RETRY_STATUSES = (429, 502, 503, 504)
# Every method we send is safe to repeat (see the module docstring); connect errors are retried
# whatever the method, since nothing reached the server.
RETRY_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"})
DEFAULT_RETRIES = 8            # dropped answers and 429/502/503/504
DEFAULT_CONNECT_RETRIES = 2    # refused, unknown host, connect timeout: 3 tries in all
DEFAULT_BACKOFF = 0.2          # seconds: 0.2, 0.4, 0.8, ... (+ jitter), capped at BACKOFF_MAX
BACKOFF_MAX = 10.0
BACKOFF_JITTER = 0.2
DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds to open a connection
DEFAULT_READ_TIMEOUT = 300.0   # seconds to wait for an answer: a large transaction can take a while
DEFAULT_TIMEOUT = (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT)
MAX_REDIRECTS = 5
BODY_IN_MESSAGE = 300          # characters of a non-FHIR error answer quoted in a message
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
SCHEMES = {"http": 80, "https": 443}   # the schemes a base URL may have, and their default ports
VERSIONS = {"4.0": "4.0", "4.3": "4.0", "5.0": "5.0"}  # fhirVersion prefix -> what we send (R4B reads R4)

# The one boundary where requests' exceptions become ours, in two tables, first match wins
# (subclasses first). _TRANSLATIONS: the requests exception -> our error, what failed, and the
# retry counter that was spent ("connect" | "read" | None). _CAUSES: what is found anywhere in the
# chain of causes -> the reason given, and, when it says so, the stage it failed at.
_TRANSLATIONS: tuple[tuple[type[Exception], type[PushError], str, str | None], ...] = (
    (requests.exceptions.SSLError, TransportError, "TLS failed", "connect"),
    (requests.exceptions.ConnectTimeout, TransportError, "timed out connecting", "connect"),
    (requests.exceptions.ReadTimeout, TransportError, "timed out waiting for the answer", "read"),
    (requests.exceptions.ConnectionError, TransportError, "connection failed", "read"),
    (requests.exceptions.ChunkedEncodingError, TransportError, "connection dropped mid-answer", "read"),
    (requests.exceptions.ContentDecodingError, TransportError, "answer could not be decoded", None),
    (requests.exceptions.RetryError, TransportError, "gave up after retries", None),
    (requests.exceptions.InvalidURL, PushError, "invalid URL", None),
    (requests.exceptions.RequestException, PushError, "request failed", None),
)
_CAUSES: tuple[tuple[type[BaseException], str, str | None], ...] = (
    (ConnectionRefusedError, "connection refused", "connect"),
    (socket.gaierror, "unknown host", "connect"),
    (ssl.SSLCertVerificationError, "TLS certificate not trusted", "connect"),
    (ssl.SSLError, "TLS failed", "connect"),
    (urllib3.exceptions.ConnectTimeoutError, "timed out connecting", "connect"),
    (urllib3.exceptions.ReadTimeoutError, "timed out waiting for the answer", "read"),
    (http.client.RemoteDisconnected, "the server closed the connection without answering", "read"),
    (ConnectionResetError, "connection reset by the server", None),
    (ConnectionAbortedError, "connection aborted", None),
    (TimeoutError, "timed out", None),
    (OSError, "network error", None),
)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps (``__cause__``, ``__context__``, urllib3's ``reason``,
    exception arguments), outermost first."""
    out: list[BaseException] = []
    todo = [exc]
    while todo:
        node = todo.pop(0)
        if any(node is seen for seen in out):
            continue
        out.append(node)
        todo += [n for n in (getattr(node, "reason", None), node.__cause__, node.__context__, *node.args)
                 if isinstance(n, BaseException)]
    return out


def _reason(exc: BaseException) -> tuple[str, str | None] | None:
    """The first row of ``_CAUSES`` that anything in the exception's chain is an instance of."""
    chain = _causes(exc)
    for kind, reason, stage in _CAUSES:
        if any(isinstance(cause, kind) for cause in chain):
            return reason, stage
    return None


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the port filled in from the scheme (what credentials stay with)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or SCHEMES.get(scheme, 0)


def check_base_url(url: str, what: str = "the FHIR base URL") -> str:
    """``url`` when it is an absolute http(s) URL with a host; PushError saying what is wrong otherwise."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES or not parts.netloc:
        raise PushError(f"{what} {url!r} needs http:// or https:// and a host "
                        f"(for example http://{url.split('://')[-1] or 'localhost:8080/fhir'})", url=url)
    port = parts.netloc.rsplit("@", 1)[-1].rpartition("]")[2].partition(":")[2]
    if port:
        try:
            parse_integer(port, f"the port of {what}", minimum=1, maximum=65535)
        except FhirStudyError as exc:
            raise PushError(f"{what} {url!r}: {exc}", url=url) from exc
    if not parts.hostname:
        raise PushError(f"{what} {url!r} has no host", url=url)
    return url


def retry_policy(total: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
                 connect: int = DEFAULT_CONNECT_RETRIES) -> Retry:
    """The retry policy of the push session (see the module docstring): ``connect`` retries when
    no connection could be made, ``total`` for everything else."""
    return Retry(total=max(total, connect), connect=connect, read=total, status=total, other=total,
                 redirect=0, backoff_factor=backoff, backoff_max=BACKOFF_MAX, backoff_jitter=BACKOFF_JITTER,
                 status_forcelist=RETRY_STATUSES, allowed_methods=RETRY_METHODS,
                 respect_retry_after_header=True, raise_on_status=False)


def make_session(retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
                 pool_size: int = 10, connect_retries: int = DEFAULT_CONNECT_RETRIES) -> requests.Session:
    """A session whose http and https adapters retry with :func:`retry_policy`."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry_policy(retries, backoff, connect_retries),
                          pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _tries(session: requests.Session | None, url: str, stage: str | None) -> str:
    """" (tried 3 times)" from the session's retry policy for ``stage``, or ""."""
    try:
        policy = session.get_adapter(url).max_retries if session is not None and stage else None
    except requests.exceptions.InvalidSchema:
        policy = None
    if not isinstance(policy, Retry):
        return ""
    limits = [n for n in (policy.total, getattr(policy, stage)) if isinstance(n, int) and n is not True]
    tries = 1 + min(limits) if limits else 1
    return f" (tried {tries} time{'s' if tries != 1 else ''})"


@contextmanager
def translate_errors(url: str, session: requests.Session | None = None) -> Iterator[None]:
    """Re-raise requests' exceptions as fhirstudy errors (the tables ``_TRANSLATIONS`` and ``_CAUSES``),
    one line each: what failed, where, why, and how often it was tried."""
    try:
        yield
    except requests.exceptions.RequestException as exc:
        for source, target, what, stage in _TRANSLATIONS:
            if isinstance(exc, source):
                break
        found = _reason(exc) if target is TransportError else None
        reason, stage = (found[0], found[1] or stage) if found else (what, stage)
        if stage == "connect":
            scheme, host, port = origin(url)
            message = f"cannot reach {scheme}://{host}:{port}/: {reason}{_tries(session, url, stage)}"
        else:
            message = f"{url}: {reason}{_tries(session, url, stage) if target is TransportError else ''}"
        extra = {"cause": exc} if target is TransportError else {}
        raise target(message, url=url, **extra) from exc
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


def body_text(response: requests.Response) -> str:
    """The start of an answer's body on one line (an HTML page is only named)."""
    if "html" in response.headers.get("Content-Type", "").lower():
        return "(an HTML page)"
    return " ".join(response.text[:BODY_IN_MESSAGE].split())


def raise_for_status(response: requests.Response) -> None:
    """RemoteRejected (4xx), AuthenticationFailed (401/403) or RemoteError (5xx) for an error answer."""
    if response.status_code < 400:
        return
    outcome = _outcome(response)
    text = outcome_text(outcome) or body_text(response)
    message = f"{response.request.method} {response.url}: {response.status_code} {response.reason}: {text}"
    kind = (AuthenticationFailed if response.status_code in (401, 403) else
            RemoteRejected if response.status_code < 500 else RemoteError)
    raise kind(message, url=response.url, status=response.status_code, outcome=outcome, response=response)


class FhirClient:
    """A FHIR server at ``base_url`` (http or https), spoken to through ``session`` (made with
    :func:`make_session` when not given); ``token`` or ``auth`` authenticates every request to the
    base URL's origin, and none to any other."""

    def __init__(self, base_url: str, session: requests.Session | None = None, token: str | None = None,
                 auth: requests.auth.AuthBase | None = None, timeout: Any = DEFAULT_TIMEOUT):
        self.base_url = check_base_url(base_url).rstrip("/") + "/"
        self.origin = origin(self.base_url)
        self.session = session if session is not None else make_session()
        self.auth = auth if auth is not None else BearerAuth(token) if token else None
        self.timeout = timeout
        self._metadata: dict | None = None

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (relative to the base) or ``path`` itself when absolute."""
        return urljoin(self.base_url, path.lstrip("/")) if "://" not in path else path

    def request(self, method: str, path: str, body: Any = None, params: Any = None,
                headers: dict | None = None) -> requests.Response:
        """Send one request, following redirects (at most ``MAX_REDIRECTS``; credentials only to the
        base URL's origin); a fhirstudy error for a transport failure or an error status."""
        url = self.url(path)
        all_headers = {"Accept": FHIR_JSON, **({"Content-Type": FHIR_JSON} if body is not None else {}),
                       **(headers or {})}
        data = orjson.dumps(body) if body is not None else None
        for _ in range(MAX_REDIRECTS + 1):
            auth = self.auth if origin(url) == self.origin else None
            with translate_errors(url, self.session):
                response = self.session.request(method, url, data=data, params=params, headers=all_headers,
                                                auth=auth, timeout=self.timeout, allow_redirects=False)
            location = response.headers.get("Location")
            if response.status_code not in REDIRECT_STATUSES or not location:
                break
            response.close()
            url, params = urljoin(response.url, location), None
            if response.status_code == 303 or (response.status_code in (301, 302) and method not in ("GET", "HEAD")):
                method, data = "GET", None   # what browsers and requests do
                all_headers.pop("Content-Type", None)
        else:
            raise RemoteError(f"{method} {self.url(path)}: more than {MAX_REDIRECTS} redirects",
                              url=url, status=response.status_code, response=response)
        raise_for_status(response)
        return response

    def json(self, method: str, path: str, body: Any = None, params: Any = None,
             headers: dict | None = None, expect: str | None = None) -> dict:
        """Send one request and decode its answer: a FHIR resource (of type ``expect`` when given),
        RemoteError for anything else (HTML, plain JSON)."""
        response = self.request(method, path, body, params, headers)
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            kind = response.headers.get("Content-Type", "").split(";")[0] or "no content type"
            raise RemoteError(f"{method} {response.url}: the answer is not JSON ({kind})", url=response.url,
                              status=response.status_code, response=response) from None
        got = answer.get("resourceType") if isinstance(answer, dict) else None
        if not isinstance(got, str) or (expect and got != expect):
            what = f"a {got}" if isinstance(got, str) else "JSON that is not a FHIR resource"
            raise RemoteError(f"{method} {response.url}: the answer is {what}, not "
                              f"{'a ' + expect if expect else 'a FHIR resource'}", url=response.url,
                              status=response.status_code, response=response)
        return answer

    def metadata(self) -> dict:
        """The server's CapabilityStatement (fetched once); UnsupportedServer when there is none."""
        if self._metadata is None:
            try:
                self._metadata = self.json("GET", "metadata", expect="CapabilityStatement")
            except RemoteRejected as exc:
                raise UnsupportedServer(f"{self.base_url} has no usable /metadata ({exc.status}): is this "
                                        f"the FHIR base URL?", url=exc.url) from exc
            except RemoteError as exc:
                if exc.status >= 400 or isinstance(exc, AuthenticationFailed):
                    raise
                raise UnsupportedServer(f"{exc}; is {self.base_url} the FHIR base URL?", url=exc.url) from exc
        return self._metadata

    def fhir_version(self) -> str:
        """"4.0" or "5.0": the FHIR version to send, from the CapabilityStatement's fhirVersion."""
        version = str(self.metadata().get("fhirVersion", ""))
        sent = VERSIONS.get(".".join(version.split(".")[:2]))
        if sent is None:
            raise UnsupportedServer(f"{self.base_url} speaks FHIR {version or '(no fhirVersion)'}; "
                                    f"fhirstudy sends R4 (4.0) or R5 (5.0)", url=self.base_url)
        return sent

    def _capability(self, resource_type: str) -> dict:
        rests = self.metadata().get("rest")
        for rest in rests if isinstance(rests, list) else []:
            resources = rest.get("resource") if isinstance(rest, dict) else None
            for res in resources if isinstance(resources, list) else []:
                if isinstance(res, dict) and res.get("type") == resource_type:
                    return res
        return {}

    def supports_conditional(self, resource_type: str) -> bool:
        """Whether the CapabilityStatement offers conditional create and update on a type."""
        res = self._capability(resource_type)
        return bool(res.get("conditionalCreate")) and bool(res.get("conditionalUpdate"))

    def takes_client_ids(self, resource_type: str) -> bool:
        """Whether pushed resources of a type can keep their ids: the CapabilityStatement says an
        update may create with the client's id (``updateCreate``) and updates are version-aware
        (``versioning: versioned-update``, what fhirstudy and HAPI FHIR say; both keep the version
        of a resource updated with the content it has, so a replayed update writes nothing). The
        Medplum engine says ``versioned`` and makes a new version on every update."""
        res = self._capability(resource_type)
        return res.get("updateCreate") is True and res.get("versioning") == "versioned-update"

    def transaction(self, bundle: dict) -> dict:
        """POST a transaction (or batch) Bundle to the base; the response Bundle."""
        return self.json("POST", "", bundle, expect="Bundle")

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
        page = self.json("GET", resource_type, params=params, expect="Bundle")
        while True:
            out.extend(e["resource"] for e in page.get("entry", []) if "resource" in e
                       and (e.get("search") or {}).get("mode", "match") == "match")
            nxt = next((lk["url"] for lk in page.get("link", []) if lk.get("relation") == "next"), None)
            if not nxt:
                return out
            page = self.json("GET", nxt, expect="Bundle")

    def batch_search(self, searches: list[tuple[str, dict | list]]) -> list[list[dict]]:
        """Several searches in ONE batch Bundle (``GET Type?params`` entries); the matches of each,
        in order (first page only: ask enough ``_count``).  RemoteRejected when the batch or any
        entry is refused (a server may not search inside a batch: search one by one then)."""
        response = self.transaction({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": f"{rtype}?{urlencode(params)}"}} for rtype, params in searches]})
        out = []
        for (rtype, params), entry in zip(searches, response.get("entry", []), strict=True):
            answer = entry.get("response") or {}
            status = str(answer.get("status", ""))
            if not status.startswith("2"):
                raise RemoteRejected(f"batch search {rtype}?{urlencode(params)}: {status}", url=self.base_url,
                                     status=int(status[:3]) if status[:3].isdigit() else 400,
                                     outcome=answer.get("outcome"))
            out.append([e["resource"] for e in (entry.get("resource") or {}).get("entry", [])
                        if "resource" in e and (e.get("search") or {}).get("mode", "match") == "match"])
        return out

    def put(self, resource: dict, path: str | None = None) -> dict:
        """PUT a resource (to ``Type/id``, or to ``path`` such as ``Type?url=...``)."""
        return self.json("PUT", path or f"{resource['resourceType']}/{resource['id']}", resource)

    def close(self) -> None:
        """Close the session's pooled connections."""
        self.session.close()
