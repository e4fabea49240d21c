"""Byte-identity check of ``fhirstudy convert``: the same inputs converted by another commit (the
base: where this branch left ``main``, ``git merge-base main HEAD``, unless told) and by this
checkout must give the same bytes, the same problems on stderr and the same exit status.

    python bench/compare_outputs.py [--base REF] [--records 2000] [--jobs 1 2] [--work DIR]

Inputs: every file of ``../shared/ctgov-samples``, ``seeds/``, and ``bench/convert.py``'s replicated
registry files (``--records`` records). Each input set is converted by both trees into each kind of
output ``fhirstudy convert`` writes (NDJSON and a folder of indented Bundles without ``--report``,
as the benchmark runs; one Bundle file with ``--report``); every output file, the report and
stderr are compared byte for byte. The base tree is
``git archive`` of the base commit, so the working tree of any checkout is never touched. With
``--work DIR`` the base's outputs are kept there (by commit) and reused by the next run.

Exit status 0 when everything is identical, 1 otherwise (the first differences are printed).
"""
from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert as bench_convert  # noqa: E402  (bench/convert.py: the replicated inputs)

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = {"ndjson": "out.ndjson", "folder": "out", "bundle": "out.json"}
REPORTED = {"bundle"}  # outputs converted with --report (the unmapped-field accounting on); the others without


def _commit(ref: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True, text=True,
                          check=True).stdout.strip()


def _base_tree(commit: str, where: Path) -> Path:
    """The base commit's files (``git archive``), unpacked once into ``where``."""
    tree = where / f"tree-{commit[:12]}"
    if not (tree / "fhirstudy").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def _inputs(where: Path, records: int) -> dict[str, list[Path]]:
    """The input sets by name: the shared samples, the seeds and the replicated registry files."""
    replicated = where / f"replicated-{records}"
    if not (replicated / "studies.csv").exists():
        replicated.mkdir(parents=True, exist_ok=True)
        bench_convert.build_inputs(bench_convert.DEFAULT_SAMPLES, records, replicated)
    return {"samples": [bench_convert.DEFAULT_SAMPLES], "seeds": [ROOT / "seeds"], "replicated": [replicated]}


def _convert(tree: Path, inputs: list[Path], output: str, jobs: int, out_dir: Path) -> None:
    """One ``fhirstudy convert`` run of ``tree``'s code; stderr and the exit status kept beside the output."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    report = ["--report", str(out_dir / "report.json")] if output in REPORTED else []
    proc = subprocess.run([sys.executable, "-m", "fhirstudy.cli", "convert", *map(str, inputs),
                           "-o", str(out_dir / OUTPUTS[output]), "--jobs", str(jobs), *report],
                          capture_output=True, env=env, cwd=str(out_dir))
    (out_dir / "stderr.txt").write_bytes(proc.stderr.replace(str(out_dir).encode(), b"<out>"))
    (out_dir / "status.txt").write_text(f"{proc.returncode}\n")


def _differences(a: Path, b: Path) -> list[str]:
    """Relative paths whose bytes differ (or exist on one side only) between two output folders."""
    out = []
    comparison = filecmp.dircmp(a, b)
    stack = [(comparison, "")]
    while stack:
        cmp, prefix = stack.pop()
        out += [f"{prefix}{n} (only in base)" for n in cmp.left_only]
        out += [f"{prefix}{n} (only in this tree)" for n in cmp.right_only]
        for name in cmp.common_files:
            if not filecmp.cmp(Path(cmp.left) / name, Path(cmp.right) / name, shallow=False):
                out.append(f"{prefix}{name}")
        stack += [(sub, f"{prefix}{name}/") for name, sub in cmp.subdirs.items()]
    return sorted(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the commit to compare with (default: git merge-base main HEAD)")
    parser.add_argument("--records", type=int, default=2000, help="replicated registry records (default 2000)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--outputs", nargs="+", default=list(OUTPUTS), choices=list(OUTPUTS))
    parser.add_argument("--work", type=Path, help="keep the base tree, inputs and base outputs here for the next run")
    args = parser.parse_args()
    commit = _commit(args.base) if args.base else subprocess.run(
        ["git", "-C", str(ROOT), "merge-base", "main", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        base = _base_tree(commit, work)
        failed = 0
        for name, inputs in _inputs(work, args.records).items():
            for output in args.outputs:
                for jobs in args.jobs:
                    label = (f"{name}-{output}{'-report' if output in REPORTED else ''}-jobs{jobs}"
                             + (f"-{args.records}" if name == "replicated" else ""))
                    base_out = work / f"base-{commit[:12]}" / label
                    if not (base_out / "status.txt").exists():
                        _convert(base, inputs, output, jobs, base_out)
                    head_out = Path(tmp) / "head" / label
                    _convert(ROOT, inputs, output, jobs, head_out)
                    diff = _differences(base_out, head_out)
                    count = sum(1 for _ in head_out.rglob("*") if _.is_file())
                    print(f"{label:36s} {'identical' if not diff else 'DIFFERENT'} ({count} files)")
                    for line in diff[:10]:
                        print(f"    differs: {line}")
                    failed += bool(diff)
    print(f"compared with {args.base or 'the merge base'} ({commit[:12]}): "
          f"{'all identical' if not failed else f'{failed} differ'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
