"""The FHIR REST server (Flask): ``create_app`` builds it, ``init_store`` opens its store.

Config keys (defaults from :func:`fhirstudy.config.read`: ``FHIRSTUDY_<KEY>``, else the named
default; ``test_config`` wins): ``DATABASE_URL`` (default ``sqlite:///fhirstudy.db``),
``BASE_URL`` (the public base URL used in ``fullUrl`` and links; derived from each request when
not set), ``WRITE_TOKEN`` (the bearer token writes must present; without one the server is
read-only and refuses writes with 403) and
``SEARCH_CACHE_BYTES`` (search responses kept per app until the next write,
:mod:`fhirstudy.service.cache`; default 64 MiB; 0 turns the cache off).  The request limits
(``MAX_BODY_BYTES``, ``MAX_URL_BYTES``, ``MAX_HEADER_BYTES``, ``MAX_HEADER_FIELDS``) are described
in :mod:`fhirstudy.server.boundary`.

``init_store`` also creates the app's one :class:`fhirstudy.service.SearchService` (the store's
registry, the cache) in ``app.extensions[SERVICE_EXTENSION]``; routes, batch entries and the
CapabilityStatement use it, so the registry is loaded once, by the store.  This package may import
Flask, werkzeug, fhirstudy.service, fhirstudy.store, fhirstudy.search and fhirstudy.validation.

Blueprints: ``routes`` (metadata, read, search), ``history`` (history, vread; 304/410 on read)
and ``write`` (create, update, delete, conditional ones, transaction/batch, ``$validate``), and
``operations`` (``ResearchStudy/$match``, the OperationDefinitions), and ``bulk`` (Bulk Data
``$export``: kick-off, status, files; its jobs kept in the database, :mod:`fhirstudy.export`).
The ``EXPORT_*`` keys are described in :mod:`fhirstudy.server.bulk`.  The web pages
(:mod:`fhirstudy.pages`: the same searches and reads as HTML, for a request that asks for HTML)
are registered last.
"""
from __future__ import annotations

from flask import Flask

from fhirstudy import config
from fhirstudy.store import open_store

STORE_EXTENSION = "fhirstudy.store"
SERVICE_EXTENSION = "fhirstudy.search_service"


def create_app(test_config: dict | None = None) -> Flask:
    """Build the Flask app: config, store, the error handler, the FHIR read, history and write routes."""
    from fhirstudy.server import boundary, bulk, history, operations, outcome, routes, write

    app = Flask(__name__)
    app.config.from_mapping(config.read(config.SERVER_KEYS))  # FHIRSTUDY_<KEY>, else the named defaults
    if test_config:
        app.config.from_mapping(test_config)
    init_store(app)
    outcome.init_app(app)
    boundary.init_app(app)
    app.register_blueprint(bulk.bp)
    app.register_blueprint(routes.bp)
    app.register_blueprint(operations.bp)
    app.register_blueprint(history.bp)
    app.register_blueprint(write.bp)
    history.init_app(app)
    from fhirstudy import pages   # downstream of the server: imported here only (pages use its helpers)

    pages.init_app(app)
    return app


def init_store(app: Flask) -> None:
    """Open the store at ``app.config["DATABASE_URL"]`` for ``app`` (one engine per app) and the
    search service on it (the store's registry; ``SEARCH_CACHE_BYTES`` of cache)."""
    from fhirstudy.service import SearchService

    store = app.extensions[STORE_EXTENSION] = open_store(app.config["DATABASE_URL"])
    app.extensions[SERVICE_EXTENSION] = SearchService(store, store.registry, app.config["SEARCH_CACHE_BYTES"])


def close_store(app: Flask) -> None:
    """Close the store of ``app`` (for tests and shutdown), its export runner stopped first."""
    from fhirstudy.server.bulk import stop_runner

    stop_runner(app)
    app.extensions.pop(SERVICE_EXTENSION, None)
    store = app.extensions.pop(STORE_EXTENSION, None)
    if store is not None:
        store.close()
