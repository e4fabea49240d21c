"""The house's one-way flow, pinned: upstream stages never import downstream ones.

Each module is imported in a fresh interpreter and the fhirstudy modules it pulled in are compared
with what its stage may use (the way pallets/click tests/test_imports.py does it).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

DOWNSTREAM_OF = {
    "fhirstudy.trial": {"fhirstudy.sources", "fhirstudy.mappers", "fhirstudy.validation", "fhirstudy.store",
                        "fhirstudy.server", "fhirstudy.search", "fhirstudy.cli"},
    "fhirstudy.sources": {"fhirstudy.mappers", "fhirstudy.validation", "fhirstudy.store", "fhirstudy.server",
                          "fhirstudy.search", "fhirstudy.cli"},
    "fhirstudy.mappers": {"fhirstudy.sources", "fhirstudy.validation", "fhirstudy.store", "fhirstudy.server",
                          "fhirstudy.search", "fhirstudy.cli"},
    "fhirstudy.validation": {"fhirstudy.sources", "fhirstudy.store", "fhirstudy.server", "fhirstudy.cli"},
    "fhirstudy.store": {"fhirstudy.sources", "fhirstudy.mappers", "fhirstudy.server", "fhirstudy.cli"},
}
NO_WEB_OR_SQL = {"flask", "werkzeug", "sqlalchemy", "requests", "gunicorn"}
SCRIPT = "import json, sys, {m}; print(json.dumps(sorted(sys.modules)))"


@pytest.mark.parametrize("module", sorted(DOWNSTREAM_OF))
def test_stage_imports_nothing_downstream(module):
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(m=module)], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    bad = {m for m in loaded if any(m == d or m.startswith(d + ".") for d in DOWNSTREAM_OF[module])}
    assert not bad, f"{module} imports downstream modules {sorted(bad)}"
    if module in ("fhirstudy.trial", "fhirstudy.sources", "fhirstudy.mappers"):
        assert not {m.split(".")[0] for m in loaded} & NO_WEB_OR_SQL, f"{module} imports web or SQL libraries"
