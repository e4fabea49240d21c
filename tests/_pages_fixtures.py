"""A real fhirstudy server for the page tests: the seeds and the shared ClinicalTrials.gov samples
converted and stored in a fresh SQLite file, served over HTTP on 127.0.0.1 (a thread)."""
from __future__ import annotations

import contextlib

from _server_fixtures import fixed_clock, serve_in_thread
from conftest import SAMPLES, SEEDS

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"}


def loaded_app(db_path, **config):
    """The app on a SQLite file at ``db_path`` with the seeds and samples stored."""
    from fhirstudy.pipeline import convert
    from fhirstudy.server import STORE_EXTENSION, create_app

    inputs = [SEEDS] + ([SAMPLES] if SAMPLES.is_dir() else [])
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{db_path}", **config})
    store = app.extensions[STORE_EXTENSION]
    store.clock = fixed_clock
    store.put_many([e["resource"] for c in convert(inputs) if getattr(c, "bundle", None)
                     for e in c.bundle["entry"]])
    return app


@contextlib.contextmanager
def pages_server(db_path, **config):
    """Yields the base URL of a served, loaded app."""
    from fhirstudy.server import close_store

    app = loaded_app(db_path, **config)
    try:
        with serve_in_thread(app) as url:
            yield url
    finally:
        close_store(app)
