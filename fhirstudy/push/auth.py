"""Authentication for pushing: a fixed bearer token, or SMART Backend Services.

SMART Backend Services (client credentials with a signed JWT assertion, hl7.org/fhir/smart-app-launch
backend-services): the client signs a short-lived JWT (``iss`` = ``sub`` = client id, ``aud`` = the
token URL, ``jti`` unique, ``exp`` <= 5 minutes) with its private key (RS384 for an RSA key, ES384
for an EC key), posts it to the token URL with ``grant_type=client_credentials`` and a scope
(default ``system/*.write``), and uses the access token it gets until shortly before it expires.
A 401 from the FHIR server drops the cached token and the request is sent once more with a new one.
"""
from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import jwt
import orjson
import requests
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ..errors import AuthenticationFailed, FhirStudyError, PushError
from ..limits import parse_integer
from .client import DEFAULT_CONNECT_TIMEOUT, BearerAuth, body_text, check_base_url, make_session, raise_for_status, translate_errors

__all__ = ["BearerAuth", "SmartBackendAuth", "DEFAULT_SCOPE"]

DEFAULT_SCOPE = "system/*.write"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300   # seconds: the most the SMART spec allows
EXPIRY_MARGIN = 30         # seconds: renew this long before the token expires
DEFAULT_EXPIRES_IN = 300   # when the token endpoint does not say
TOKEN_TIMEOUT = (DEFAULT_CONNECT_TIMEOUT, 60.0)  # connect, read (seconds) for the token endpoint


def _load_key(private_key: str | bytes | Path):
    """The private key from PEM text or bytes or a PEM file; PushError saying why it cannot be used."""
    where = "the private key"
    if isinstance(private_key, Path) or (isinstance(private_key, str) and "-----BEGIN" not in private_key):
        where = f"the private key {str(private_key)!r}"
        try:
            private_key = Path(private_key).read_bytes()
        except OSError as exc:
            raise PushError(f"cannot read {where}: {exc.strerror or exc}") from exc
    data = private_key.encode() if isinstance(private_key, str) else private_key
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:  # not PEM, encrypted, or a public key
        raise PushError(f"{where} is not an unencrypted PEM private key "
                        f"({(str(exc) or type(exc).__name__).splitlines()[0].split('. ')[0].rstrip('.')})") from exc
    except UnsupportedAlgorithm as exc:
        raise PushError(f"{where} uses a key type this system cannot load: {exc}") from exc
    algorithm_for(key)
    return key


def algorithm_for(key) -> str:
    """RS384 for an RSA key, ES384 for an EC key (the two SMART Backend Services requires)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ES384"
    raise PushError(f"SMART Backend Services needs an RSA or EC private key, not {type(key).__name__}")


class SmartBackendAuth(requests.auth.AuthBase):
    """Bearer tokens from a SMART Backend Services token endpoint, cached until they expire.

    ``private_key``: PEM text or bytes, or the path of a PEM file. ``kid``: the key id to put in
    the JWT header (the one registered in the client's JWKS). ``session``: for the token
    endpoint (default: a retrying session of its own); ``clock``: seconds since the epoch."""

    def __init__(self, token_url: str, client_id: str, private_key: str | bytes | Path,
                 scope: str = DEFAULT_SCOPE, kid: str | None = None, algorithm: str | None = None,
                 session: requests.Session | None = None, clock: Callable[[], float] = time.time):
        self.token_url = check_base_url(token_url, "the token URL")
        self.client_id = client_id
        self.key = _load_key(private_key)
        self.algorithm = algorithm or algorithm_for(self.key)
        self.scope = scope
        self.kid = kid
        self.session = session if session is not None else make_session()
        self.clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.tokens_fetched = 0

    def assertion(self) -> str:
        """A freshly signed client assertion JWT."""
        now = int(self.clock())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_url,
                  "jti": str(uuid.uuid4()), "iat": now, "exp": now + ASSERTION_LIFETIME}
        headers = {"typ": "JWT", **({"kid": self.kid} if self.kid else {})}
        return jwt.encode(claims, self.key, algorithm=self.algorithm, headers=headers)

    def token(self) -> str:
        """The cached access token, or a new one when there is none or it is about to expire."""
        with self._lock:
            if self._token is None or self.clock() >= self._expires_at - EXPIRY_MARGIN:
                self._fetch()
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token (the server refused it)."""
        with self._lock:
            self._token = None

    def _fetch(self) -> None:
        form = {"grant_type": "client_credentials", "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": self.assertion()}
        with translate_errors(self.token_url, self.session):
            response = self.session.post(self.token_url, data=form, headers={"Accept": "application/json"},
                                         timeout=TOKEN_TIMEOUT)
        try:
            raise_for_status(response)
        except Exception as exc:
            raise AuthenticationFailed(f"the token endpoint refused client {self.client_id!r}: {exc}",
                                       url=self.token_url, status=response.status_code) from exc
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
            raise AuthenticationFailed(f"the token endpoint sent no access_token: {body_text(response)}",
                                       url=self.token_url, status=response.status_code)
        self._token = body["access_token"]
        try:
            expires_in = parse_integer(body.get("expires_in", DEFAULT_EXPIRES_IN), "expires_in", minimum=1)
        except FhirStudyError:
            expires_in = DEFAULT_EXPIRES_IN
        self._expires_at = self.clock() + expires_in
        self.tokens_fetched += 1

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        request.register_hook("response", self._retry_on_401)
        return request

    def _retry_on_401(self, response: requests.Response, **kwargs) -> requests.Response:
        """Send the request once more with a new token when the server refused the cached one."""
        if response.status_code != 401 or getattr(response.request, "_fhirstudy_retried", False):
            return response
        self.invalidate()
        response.content  # noqa: B018 - consume the body so the connection can be reused
        response.close()
        request = response.request.copy()
        request._fhirstudy_retried = True
        request.headers["Authorization"] = f"Bearer {self.token()}"
        again = response.connection.send(request, **kwargs)
        again.history.append(response)
        again.request = request
        return again
