"""The resource types fhirstudy makes, from one table: ``mappings/resource-types.json``.

Each row names a resource type and, when fhirstudy makes it from a Trial, the mapper module that
declares it. A mapper module has these names:

    RESOURCE_TYPE                       the FHIR type it makes
    map_trial(trial) -> dict | list     the resources of that type for one trial
      or
    map_resources(trial, made) -> dict | list   the same, given the resources made before it
                                        (the Provenance targets them)
    to_r4(resource, context) -> dict | list     its R4 shape (a list when R4 needs more resources;
                                        ``context`` is an ``r4_base.R4Context``)

The table's order is the bundle order. Adding a resource type is one mapper module and one row.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .. import mappings

TABLE_FILE = "resource-types.json"  # in fhirstudy.mappings
_PACKAGE = __name__.rsplit(".", 1)[0]  # relative mapper names are resolved against fhirstudy.mappers


def rows() -> list[dict]:
    """The rows of the table, in bundle order."""
    return mappings.load(TABLE_FILE)["resourceTypes"]


def load_mappers() -> tuple[ModuleType, ...]:
    """The mapper modules, in bundle order, each checked to declare what the table says it makes."""
    out = []
    for row in rows():
        if not row.get("mapper"):
            continue
        module = importlib.import_module(row["mapper"], _PACKAGE)
        declared = getattr(module, "RESOURCE_TYPE", None)
        if declared != row["type"]:
            raise ValueError(f"{TABLE_FILE}: {row['mapper']} declares RESOURCE_TYPE {declared!r}, "
                             f"the table says {row['type']!r}")
        if not (hasattr(module, "map_trial") or hasattr(module, "map_resources")) or not hasattr(module, "to_r4"):
            raise ValueError(f"{TABLE_FILE}: {row['mapper']} needs map_trial (or map_resources) and to_r4")
        out.append(module)
    return tuple(out)
