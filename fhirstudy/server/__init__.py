"""The FHIR REST server (Flask): ``create_app`` builds it, ``init_store`` opens its store.

Config keys (defaults from :func:`fhirstudy.config.read`: ``FHIRSTUDY_<KEY>``, else the named
default; ``test_config`` wins): ``DATABASE_URL`` (default ``sqlite:///fhirstudy.db``),
``BASE_URL`` (the public base URL used in ``fullUrl`` and links; derived from each request when
not set), ``WRITE_TOKEN`` (the bearer token writes must present; without one the server is
read-only and refuses writes with 403) and
``SEARCH_CACHE_BYTES`` (search responses kept per app until the next write,
:mod:`fhirstudy.server.cache`; default 64 MiB; 0 turns the cache off).  The request limits
(``MAX_BODY_BYTES``, ``MAX_URL_BYTES``, ``MAX_HEADER_BYTES``, ``MAX_HEADER_FIELDS``) are described
in :mod:`fhirstudy.server.boundary`.

Blueprints: ``routes`` (metadata, read, search), ``history`` (history, vread; 304/410 on read)
and ``write`` (create, update, delete, conditional ones, transaction/batch, ``$validate``).
"""
from __future__ import annotations

from flask import Flask

from fhirstudy import config
from fhirstudy.store import open_store

STORE_EXTENSION = "fhirstudy.store"


def create_app(test_config: dict | None = None) -> Flask:
    """Build the Flask app: config, store, the error handler, the FHIR read, history and write routes."""
    from fhirstudy.server import boundary, history, outcome, routes, write

    app = Flask(__name__)
    app.config.from_mapping(config.read(config.SERVER_KEYS))  # FHIRSTUDY_<KEY>, else the named defaults
    if test_config:
        app.config.from_mapping(test_config)
    init_store(app)
    outcome.init_app(app)
    boundary.init_app(app)
    app.register_blueprint(routes.bp)
    app.register_blueprint(history.bp)
    app.register_blueprint(write.bp)
    history.init_app(app)
    return app


def init_store(app: Flask) -> None:
    """Open the store at ``app.config["DATABASE_URL"]`` for ``app`` (one engine per app)."""
    app.extensions[STORE_EXTENSION] = open_store(app.config["DATABASE_URL"])


def close_store(app: Flask) -> None:
    """Close the store of ``app`` (for tests and shutdown)."""
    store = app.extensions.pop(STORE_EXTENSION, None)
    if store is not None:
        store.close()
