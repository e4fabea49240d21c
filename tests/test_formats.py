"""A new input format is one reader module plus one line of ``sources.READER_MODULES``.

The package is copied into a temporary folder, a fake reader (``text-fake``: ``NCT number | title``
lines) added as one module and registered by one line; in a fresh interpreter that imports the
copy, ``fhirstudy convert`` detects the format, and ``--format text-fake`` accepts it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fhirstudy
from fhirstudy import sources

PACKAGE = Path(fhirstudy.__file__).resolve().parent
REGISTRY_LINE = '    ".text_registry_export",\n'
FAKE_READER = '''"""Reader of the test-only ``text-fake`` layout: one ``NCT number | title`` line per record."""
from __future__ import annotations

FORMAT = "text-fake"


def detect(head: str) -> bool:
    """True when the first line starts with ``FAKE|``."""
    return head.startswith("FAKE|")


def read(text: str, file: str):
    """One record per line after the first."""
    for line in text.splitlines()[1:]:
        nct, title = (part.strip() for part in line.split("|", 1))
        yield {"brief_title": title, "identifiers": [{"value": nct, "kind": "nct"}]}, []
'''


def test_readers_declare_their_format_once():
    assert sources.FORMATS == tuple(r.FORMAT for r in sources.READERS)
    assert len(set(sources.FORMATS)) == len(sources.FORMATS)
    assert all(callable(r.detect) and (hasattr(r, "read") or hasattr(r, "read_stream")) for r in sources.READERS)
    assert len(sources.READER_MODULES) == len(sources.READERS)


def test_one_module_and_one_line_add_a_format(tmp_path):
    copy = tmp_path / "site" / "fhirstudy"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "sources" / "text_fake.py").write_text(FAKE_READER, encoding="utf-8")  # the one module
    init = copy / "sources" / "__init__.py"
    text = init.read_text(encoding="utf-8")
    assert text.count(REGISTRY_LINE) == 1
    init.write_text(text.replace(REGISTRY_LINE, REGISTRY_LINE + '    ".text_fake",\n'), encoding="utf-8")  # the one line
    records = tmp_path / "trials.txt"
    records.write_text("FAKE|\nNCT01234567 | A fake trial\nNCT07654321 | Another fake trial\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "FHIRSTUDY_MAPPINGS_DIR"}
    env["PYTHONPATH"] = str(copy.parent)
    for extra in ([], ["--format", "text-fake"]):
        out = subprocess.run([sys.executable, "-m", "fhirstudy.cli", "convert", str(records), *extra, "-o", "-"],
                             capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
        bundles = [json.loads(line) for line in out.stdout.splitlines()]
        studies = [b["entry"][0]["resource"] for b in bundles]
        assert [s["id"] for s in studies] == ["nct01234567", "nct07654321"]
        assert studies[0]["title"] == "A fake trial"
        assert studies[0]["meta"]["source"].startswith("urn:fhirstudy:source:text-fake:trials.txt#1")
    probe = subprocess.run([sys.executable, "-c", "import fhirstudy.sources as s; print(s.__file__, s.FORMATS)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    assert str(copy) in probe.stdout and "text-fake" in probe.stdout


def test_a_file_in_no_known_format_is_a_clear_error_record(tmp_path):
    path = tmp_path / "odd.txt"
    path.write_text("FAKE|\nNCT01234567 | no reader for this layout here\n", encoding="utf-8")
    [record] = list(sources.iter_records([path]))
    assert not record.ok
    [problem] = record.problems
    assert problem.field == "format" and problem.file == str(path)
    assert problem.reason == f"no reader recognises this file as any of: {', '.join(sources.FORMATS)}"
