"""Train fhirstudy's default compression dictionary for stored resources into
``fhirstudy/mappings/content-dictionary.json``.

Converts the seeds (``seeds/``) and the ClinicalTrials.gov samples (``../shared/ctgov-samples``)
and trains a zstd dictionary (:data:`fhirstudy.store.content.DICTIONARY_SIZE` bytes, id 1) from
every resource as the store writes it (``meta.versionId`` and ``meta.lastUpdated`` set).  A new
database stores this dictionary in its ``fhirstudy_dictionary`` table, so a database keeps
reading whatever default a later fhirstudy ships.  Deterministic: the same inputs give the same
file.  Run it only on purpose (the output is checked in):

    python tools/train_content_dictionary.py
"""
from __future__ import annotations

import argparse
from pathlib import Path

import orjson

from fhirstudy.pipeline import convert
from fhirstudy.store.content import DEFAULT_DICTIONARY, DICTIONARY_SIZE, dictionary_json
from fhirstudy.store.writes import with_meta

ROOT = Path(__file__).resolve().parent.parent
INPUTS = [ROOT / "seeds", ROOT.parent / "shared" / "ctgov-samples"]
INSTANT = "2025-01-01T00:00:00.000Z"  # any instant: only its shape matters to the dictionary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "fhirstudy" / "mappings" / DEFAULT_DICTIONARY)
    parser.add_argument("--size", type=int, default=DICTIONARY_SIZE)
    args = parser.parse_args()
    data = []
    for converted in convert([p for p in INPUTS if p.exists()], unmapped=False):
        if converted.ok:
            data.extend(orjson.dumps(with_meta(entry["resource"], 1, INSTANT)) for entry in converted.bundle["entry"])
    source = "converted seeds/ and ../shared/ctgov-samples (tools/train_content_dictionary.py)"
    args.out.write_bytes(dictionary_json(1, data, source, args.size))
    print(f"{args.out}: trained from {len(data)} resources")


if __name__ == "__main__":
    main()
