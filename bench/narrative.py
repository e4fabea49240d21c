"""What narratives cost per trial: the whole conversion of each record (read, map, narratives,
validate) and the narratives alone, in ms per trial, on the seeds and the shared samples.

    python bench/narrative.py [--repeat 5] [--samples ../shared/ctgov-samples]

Run it in a tree without ``fhirstudy.narrative`` (the commit before #17) for the "before" number:
it then times the conversion only. The narratives' bytes per trial (their ``div`` strings, and the
share of the Bundle's JSON they make) are printed too.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import orjson

import fhirstudy

ROOT = Path(fhirstudy.__file__).resolve().parent.parent  # the tree whose fhirstudy is imported (PYTHONPATH)
DEFAULT_SAMPLES = ROOT.parent / "shared" / "ctgov-samples"


def main() -> None:
    from fhirstudy.mappers import map_resources
    from fhirstudy.pipeline import convert_record
    from fhirstudy.sources import iter_raw, load_record

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    args = parser.parse_args()
    records = [r for r in iter_raw([ROOT / "seeds", args.samples], unmapped=False)
               if getattr(r, "record", None) is not None]
    trials = [t for t in (load_record(r).trial for r in records) if t is not None]
    n = len(trials)

    started = time.perf_counter()
    for _ in range(args.repeat):
        converted = [convert_record(r) for r in records]
    whole = (time.perf_counter() - started) / args.repeat / n * 1000
    print(f"{n} trials; conversion (read, map, validate{', narratives' if _has_narrative() else ''}): "
          f"{whole:.2f} ms per trial")
    if not _has_narrative():
        return
    from fhirstudy.narrative import add_narratives

    mapped = [map_resources(t) for t in trials]
    started = time.perf_counter()
    for _ in range(args.repeat):
        for resources in mapped:
            add_narratives(list(resources))
    alone = (time.perf_counter() - started) / args.repeat / n * 1000
    print(f"narratives alone: {alone:.3f} ms per trial ({alone / whole:.1%} of the conversion)")
    bundles = [c.bundle for c in converted if c.ok]
    divs = sum(len(e["resource"]["text"]["div"].encode()) for b in bundles for e in b["entry"])
    total = sum(len(orjson.dumps(b)) for b in bundles)
    print(f"narrative bytes: {divs / len(bundles) / 1000:.1f} KB per trial, {divs / total:.1%} of the Bundles' JSON")


def _has_narrative() -> bool:
    try:
        import fhirstudy.narrative  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
