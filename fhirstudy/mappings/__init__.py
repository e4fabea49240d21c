"""The data fhirstudy reads instead of code: terminology tables, field tables and the FHIR
definitions extracted from the official packages, shipped inside the package (a wheel holds them).

:func:`load` is the one loader: a JSON file of this folder by name, parsed once per process.
``FHIRSTUDY_MAPPINGS_DIR`` (read when a table is first loaded) points it at another folder of the
same files, e.g. to try a changed table without reinstalling (read through :mod:`fhirstudy.config`).
May import: :mod:`fhirstudy.config` only.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from fhirstudy import config

MAPPINGS_ENV = config.BY_KEY["MAPPINGS_DIR"].env


def folder() -> Path:
    """The folder the tables are read from: ``$FHIRSTUDY_MAPPINGS_DIR``, else this package's."""
    override = config.value("MAPPINGS_DIR")
    return override if override is not None else Path(str(resources.files(__name__)))


@lru_cache(maxsize=None)
def load(name: str) -> dict:
    """The JSON table ``name`` (e.g. ``"ctgov-to-fhir.json"``), parsed once per process."""
    return json.loads((folder() / name).read_text(encoding="utf-8"))
