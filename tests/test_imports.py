"""The house's one-way flow, pinned: each room imports only the rooms upstream of it.

Every module of a room is imported in a fresh interpreter and the fhirstudy rooms it pulled in
are compared with what the room may use (the way pallets/click tests/test_imports.py does it).
The arrows are the README's architecture picture:

    sources -> trial -> mappers -> validation -> store -> service -> server / push / cli

with ``search`` (parameters, query parsing, index rows) shared by store and service, and the
foundation (errors, limits, config, mappings, terminology) open to every room.
"""
from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import fhirstudy

FOUNDATION = {"errors", "limits", "config", "mappings", "terminology"}
MAY_IMPORT = {
    "errors": set(),
    "limits": {"errors"},
    "config": {"errors", "limits"},
    "mappings": {"errors", "limits", "config"},
    "terminology": {"errors", "limits", "config", "mappings"},
    "trial": {"errors"},
    "sources": FOUNDATION | {"trial"},
    "mappers": FOUNDATION | {"trial", "eligibility"},
    "validation": FOUNDATION,
    "narrative": set(),
    "eligibility": {"errors", "terminology", "mappings", "config", "limits"},
    "search": FOUNDATION,
    "store": FOUNDATION | {"search"},
    "service": FOUNDATION | {"search", "store"},
    "matching": FOUNDATION | {"search"},
    "export": FOUNDATION | {"search", "store", "service"},
    "server": FOUNDATION | {"search", "store", "service", "validation", "matching", "export"},
    "pages": FOUNDATION | {"search", "store", "service", "validation", "matching", "export", "server"},
    "push": FOUNDATION | {"trial", "mappers", "eligibility", "narrative", "search", "store", "service"},
    "pipeline": FOUNDATION | {"trial", "sources", "mappers", "eligibility", "narrative", "validation"},
    "importer": FOUNDATION | {"trial", "sources", "search", "store", "service", "validation", "server"},
    "loader": FOUNDATION | {"narrative"},
    "ctgov": FOUNDATION | {"trial", "sources", "mappers", "eligibility", "narrative", "validation", "pipeline",
                           "loader", "push", "search", "store", "service"},
    "outputs": {"errors"},
}
NO_WEB = {"flask", "werkzeug", "gunicorn", "requests"}
NO_SQL = {"sqlalchemy", "psycopg", "psycopg2"}
LIBRARIES_KEPT_OUT = {
    "trial": NO_WEB | NO_SQL, "sources": NO_WEB | NO_SQL, "mappers": NO_WEB | NO_SQL,
    "validation": NO_WEB | NO_SQL, "eligibility": NO_WEB | NO_SQL, "search": NO_WEB | NO_SQL,
    "matching": NO_WEB | NO_SQL,
    "config": NO_WEB | NO_SQL,
    "store": NO_WEB, "service": NO_WEB, "export": NO_WEB, "ctgov": NO_WEB - {"requests"},
}
SCRIPT = """
import importlib, json, pkgutil, sys
room = importlib.import_module({module!r})
for info in pkgutil.walk_packages(getattr(room, "__path__", []), room.__name__ + "."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def _loaded(module: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(module=module)], capture_output=True, text=True,
                         check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("room", sorted(MAY_IMPORT))
def test_room_imports_only_upstream_rooms(room):
    loaded = _loaded(f"fhirstudy.{room}")
    rooms = {m.split(".")[1] for m in loaded if m.startswith("fhirstudy.")} - {room}
    assert rooms <= MAY_IMPORT[room], f"fhirstudy.{room} imports {sorted(rooms - MAY_IMPORT[room])}"
    libraries = {m.split(".")[0] for m in loaded} & LIBRARIES_KEPT_OUT.get(room, set())
    assert not libraries, f"fhirstudy.{room} imports {sorted(libraries)}"


def test_every_room_has_a_rule():
    """A new room of fhirstudy/ must say where it sits (the CLI may import everything)."""
    found = {m.name for m in pkgutil.iter_modules(fhirstudy.__path__)}
    assert found - {"cli"} == set(MAY_IMPORT)


@pytest.mark.parametrize("package", sorted(
    str(p.parent.relative_to(Path(fhirstudy.__file__).parent.parent))
    for p in Path(fhirstudy.__file__).parent.rglob("__init__.py")))
def test_each_package_says_what_it_does_and_may_import(package):
    root = Path(fhirstudy.__file__).parent.parent
    doc = ast.get_docstring(ast.parse((root / package / "__init__.py").read_text(encoding="utf-8")))
    assert doc and len(doc) > 80, f"{package}/__init__.py has no docstring saying what the room does"
    assert "import" in doc.lower(), f"{package}/__init__.py does not say what the room may import"


def test_no_file_of_the_package_is_too_long_to_read_in_one_sitting():
    root = Path(fhirstudy.__file__).parent
    long = {str(p.relative_to(root)): n for p in root.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert not long, f"files over 450 lines: {long}"
