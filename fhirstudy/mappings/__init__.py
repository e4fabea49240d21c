"""The data fhirstudy reads instead of code: terminology tables, field tables and the FHIR
definitions extracted from the official packages, shipped inside the package (a wheel holds them).

:func:`load` is the one loader: a JSON file of this folder by name, parsed once per process.
``FHIRSTUDY_MAPPINGS_DIR`` (read when a table is first loaded) points it at another folder of the
same files, e.g. to try a changed table without reinstalling.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

MAPPINGS_ENV = "FHIRSTUDY_MAPPINGS_DIR"


def folder() -> Path:
    """The folder the tables are read from: ``$FHIRSTUDY_MAPPINGS_DIR``, else this package's."""
    override = os.environ.get(MAPPINGS_ENV)
    return Path(override) if override else Path(str(resources.files(__name__)))


@lru_cache(maxsize=None)
def load(name: str) -> dict:
    """The JSON table ``name`` (e.g. ``"ctgov-to-fhir.json"``), parsed once per process."""
    return json.loads((folder() / name).read_text(encoding="utf-8"))
