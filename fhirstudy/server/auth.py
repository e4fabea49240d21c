"""Who may write: a bearer token from the config, checked on every write route.

Config key ``WRITE_TOKEN`` (``FHIRSTUDY_WRITE_TOKEN`` sets the default, :mod:`fhirstudy.config`).
Without a configured token the server is read-only: every write is refused with 403.  With one,
a write must present ``Authorization: Bearer <token>`` or gets 401 with ``WWW-Authenticate:
Bearer``.  Reads (and ``$validate``, which writes nothing) stay open.
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
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized("Writes need an 'Authorization: Bearer <token>' header")
    if not hmac.compare_digest(presented.strip().encode(), str(expected).encode()):
        raise Unauthorized("The bearer token is not valid for writing",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def write_access(view: Callable) -> Callable:
    """Decorate a write route: :func:`check_write_access` runs before it."""
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        check_write_access()
        return view(*args, **kwargs)
    return guarded
