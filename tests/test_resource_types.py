"""A new resource type is one mapper module plus one row of ``mappings/resource-types.json``.

In a fresh interpreter, a fake extra type (``Basic``) is registered by a module outside the package
and one row added to a copy of the tables (``FHIRSTUDY_MAPPINGS_DIR``); ``fhirstudy convert`` then
emits it in bundle order, the Provenance targets it, and the search registry serves it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from fhirstudy import mappers, mappings
from fhirstudy.mappers import r4, registry
from fhirstudy.search.registry import SERVED_TYPES

SAMPLE = Path(__file__).resolve().parent / "data" / "ctgov_json" / "full-study.json"
BASIC_MODULE = '''
from fhirstudy.mappers import ids
from fhirstudy.mappers.common import meta, reference

RESOURCE_TYPE = "Basic"


def map_trial(trial):
    sid = ids.study_id(trial)
    return {"resourceType": RESOURCE_TYPE, "id": ids.child_id(sid, "basic"), "meta": meta(trial),
            "code": {"text": "a fhirstudy test type"}, "subject": reference("ResearchStudy", sid)}


def to_r4(resource, context):
    return dict(resource, code={"text": "in R4"})
'''


def test_the_table_drives_mappers_converters_and_served_types():
    rows = registry.rows()
    made = [r["type"] for r in rows if r.get("mapper")]
    assert mappers.RESOURCE_ORDER == tuple(made) == (
        "ResearchStudy", "PlanDefinition", "EvidenceVariable", "Group", "Location", "Evidence", "Composition",
        "Provenance")
    assert [m.RESOURCE_TYPE for m in mappers.MAPPERS] == made
    assert set(r4.CONVERTERS) == set(made)
    assert SERVED_TYPES == tuple(r["type"] for r in rows)


def test_one_module_and_one_row_add_a_resource_type(tmp_path):
    tables = tmp_path / "mappings"
    shutil.copytree(mappings.folder(), tables, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    table = json.loads((tables / registry.TABLE_FILE).read_text(encoding="utf-8"))
    table["resourceTypes"].insert(-1, {"type": "Basic", "mapper": "fhirstudy_test_basic"})  # the one row
    (tables / registry.TABLE_FILE).write_text(json.dumps(table), encoding="utf-8")
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "fhirstudy_test_basic.py").write_text(BASIC_MODULE, encoding="utf-8")  # the one module
    env = dict(os.environ, FHIRSTUDY_MAPPINGS_DIR=str(tables),
               PYTHONPATH=os.pathsep.join([str(modules), *filter(None, [os.environ.get("PYTHONPATH")])]))
    out = subprocess.run([sys.executable, "-m", "fhirstudy.cli", "convert", str(SAMPLE), "-o", "-"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    bundle = json.loads(out.stdout.splitlines()[0])
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert types[-2:] == ["Basic", "Provenance"]
    sid = bundle["entry"][0]["resource"]["id"]
    assert bundle["entry"][-2]["resource"]["id"] == f"{sid}-basic"
    assert {"reference": f"Basic/{sid}-basic"} in bundle["entry"][-1]["resource"]["target"]
    script = ("import json; from fhirstudy.search.registry import SERVED_TYPES; "
              "from fhirstudy.mappers import RESOURCE_ORDER; from fhirstudy.mappers.r4 import to_r4; "
              "from fhirstudy.sources import iter_records; from fhirstudy.mappers import map_resources; "
              f"t = next(iter(iter_records([{str(SAMPLE)!r}]))).trial; "
              "r4 = [r for r in to_r4(map_resources(t)) if r['resourceType'] == 'Basic']; "
              "print(json.dumps([SERVED_TYPES, RESOURCE_ORDER, r4[0]['code']]))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                         check=True)
    served, order, code = json.loads(out.stdout)
    assert "Basic" in served and order[-2:] == ["Basic", "Provenance"]
    assert code == {"text": "in R4"}
