"""Who may write: a bearer token from the config, checked on every write route.

Config key ``WRITE_TOKEN`` (``FHIRSTUDY_WRITE_TOKEN`` sets the default, :mod:`fhirstudy.config`).
Without a configured token the server is read-only: every write is refused with 403.  With one,
a write must present ``Authorization: Bearer <token>`` or gets 401 with ``WWW-Authenticate:
Bearer``.  Reads (and ``$validate``, which writes nothing) stay open.  Bulk Data exports
(:mod:`.bulk`) need the same token when one is configured (:func:`check_token_if_configured`):
a whole-store copy is not handed out to anyone where writes are guarded; without one they are open.
"""
from __future__ import annotations

import functools
import hmac
from typing import Callable

from flask import current_app, request

from fhirstudy.errors import Forbidden, Unauthorized

TOKEN_CONFIG = "WRITE_TOKEN"


def check_write_access() -> None:
    """Raise Forbidden when writes are disabled, Unauthorized when the bearer token is missing or
    wrong; return quietly when the request may write."""
    expected = current_app.config.get(TOKEN_CONFIG)
    if not expected:
        raise Forbidden(f"Writes are disabled on this server (no {TOKEN_CONFIG} is configured)")
    _check_bearer(str(expected), "Writes", "writing")


def token_configured() -> bool:
    """Whether the app has a write token (then exports need it too)."""
    return bool(current_app.config.get(TOKEN_CONFIG))


def check_token_if_configured() -> None:
    """Raise Unauthorized when a token is configured and the request does not present it (Bulk
    Data kick-off, status, cancel, download); return quietly when none is configured."""
    expected = current_app.config.get(TOKEN_CONFIG)
    if expected:
        _check_bearer(str(expected), "Exports", "exports")


def _check_bearer(expected: str, what: str, purpose: str) -> None:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized(f"{what} need an 'Authorization: Bearer <token>' header")
    if not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        raise Unauthorized(f"The bearer token is not valid for {purpose}",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def write_access(view: Callable) -> Callable:
    """Decorate a write route: :func:`check_write_access` runs before it."""
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        check_write_access()
        return view(*args, **kwargs)
    return guarded
