"""Export jobs in the database (fhirstudy.export.jobs) on SQLite and PostgreSQL, with small export
functions in place of the writer: claims are atomic, a silent worker's job is run again into a
fresh attempt and failed after MAX_ATTEMPTS, a failure is the status's 500 OperationOutcome, and
the kick-off's parameters are read as the IG says (fhirstudy.export.request.parse_kickoff)."""
from __future__ import annotations

from pathlib import Path

import pytest

from _server_fixtures import db_url, pg_server, pg_url  # noqa: F401
from fhirstudy.errors import InvalidRequest, TooManyRequests
from fhirstudy.export.jobs import MAX_ATTEMPTS, Jobs, Runner
from fhirstudy.export.request import ExportRequest, parse_kickoff
from fhirstudy.export.writer import ExportResult, OutputFile
from fhirstudy.service import SearchService
from fhirstudy.store import open_store


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(db_url):
    store = open_store(db_url)
    yield store
    store.close()


@pytest.fixture
def jobs(store, tmp_path):
    return Jobs(store.engine, tmp_path / "exports", retention_seconds=60, max_jobs=3, poll_seconds=2,
                stale_seconds=5, clock=Clock())


def _write_one(request, directory: Path, progress, cancelled) -> ExportResult:
    (directory / "Location-1.ndjson").write_bytes(b'{"resourceType":"Location","id":"a"}\n')
    progress(1, 1)
    return ExportResult("2025-01-02T03:04:05.678Z", [OutputFile("Location", "Location-1.ndjson", 1)])


def _run(jobs: Jobs, export, job=None):
    """Claim a job (or run ``job``, claimed by the runner's owner) and run it with ``export``."""
    runner = Runner(jobs, export)
    runner.owner = job.owner if job is not None else runner.owner
    runner._run(job.job if job is not None else jobs.claim(runner.owner))


class Claimed:
    def __init__(self, jobs: Jobs, owner: str):
        self.owner, self.job = owner, jobs.claim(owner)


def test_a_job_is_claimed_once_and_published_with_its_manifest(jobs):
    job_id = jobs.submit(ExportRequest(request_url="https://x/$export"), "https://x", False)
    claimed = Claimed(jobs, "a")
    assert claimed.job.id == job_id and claimed.job.attempt == 1 and jobs.claim("b") is None   # one owner
    _run(jobs, _write_one, claimed)
    done = jobs.get(job_id)
    assert done.status == "done" and done.manifest == {
        "transactionTime": "2025-01-02T03:04:05.678Z", "request": "https://x/$export", "requiresAccessToken": False,
        "output": [{"type": "Location", "url": f"https://x/$export-file/{job_id}/Location-1.ndjson", "count": 1}],
        "error": []}
    assert jobs.file_path(done, "Location-1.ndjson").read_bytes().startswith(b'{"resourceType":"Location"')
    assert jobs.file_path(done, "../../etc/passwd") is None


def test_polls_are_counted_in_the_database(jobs):
    job_id = jobs.submit(ExportRequest(), "https://x", False)
    assert jobs.poll(job_id)[1] is False
    assert jobs.poll(job_id)[1] is True          # sooner than poll_seconds
    jobs.clock.now += 2
    assert jobs.poll(job_id)[1] is False
    assert jobs.poll("nope") == (None, False)


def test_too_many_jobs_are_refused(jobs):
    for _ in range(3):
        jobs.submit(ExportRequest(), "https://x", False)
    with pytest.raises(TooManyRequests) as refused:
        jobs.submit(ExportRequest(), "https://x", False)
    assert refused.value.headers["Retry-After"] == "2"


def test_a_silent_workers_job_is_run_again_then_failed(jobs):
    job_id = jobs.submit(ExportRequest(), "https://x", False)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        job = jobs.claim(f"worker-{attempt}")
        assert (job.id, job.attempt) == (job_id, attempt)
        half = jobs.job_dir(job_id) / str(attempt)
        half.mkdir(parents=True)
        (half / "Location-1.ndjson").write_bytes(b'{"resourceType":')   # then the worker dies
        assert jobs.claim("other") is None          # its heartbeat is fresh
        jobs.clock.now += 6
    assert jobs.claim("last") is None
    failed = jobs.get(job_id)
    assert failed.status == "failed" and "started 3 times" in failed.error
    assert not jobs.heartbeat(job, f"worker-{MAX_ATTEMPTS}", 1, 2)   # the dead worker owns nothing


def test_a_rerun_starts_from_a_fresh_attempt_directory(jobs):
    job_id = jobs.submit(ExportRequest(), "https://x", False)
    first = jobs.claim("a")
    (jobs.job_dir(job_id) / "1").mkdir(parents=True)
    (jobs.job_dir(job_id) / "1" / "Location-1.ndjson").write_bytes(b"half")
    jobs.clock.now += 6
    _run(jobs, _write_one, Claimed(jobs, "b"))
    assert sorted(p.name for p in jobs.job_dir(job_id).iterdir()) == ["2"]
    assert not jobs.publish(first, "a", _write_one(None, jobs.job_dir(job_id) / "2", lambda *a: None, None))
    assert jobs.get(job_id).manifest["output"][0]["url"].endswith("/Location-1.ndjson")


def test_a_failing_export_fails_the_job_and_the_status_says_why(db_url, tmp_path):
    from fhirstudy.server import close_store, create_app
    from fhirstudy.server.bulk import get_jobs

    app = create_app({"TESTING": True, "DATABASE_URL": db_url, "EXPORT_DIR": str(tmp_path / "x"),
                      "EXPORT_POLL_SECONDS": 0})
    try:
        jobs = get_jobs(app)
        job_id = jobs.submit(ExportRequest(level="Group", group_id="gone"), "http://localhost", False)

        def broken(request, directory, progress, cancelled):
            raise LookupError(f"Group/{request.group_id} is not in the snapshot")
        _run(jobs, broken)
        response = app.test_client().get(f"/$export-status/{job_id}")
        assert response.status_code == 500
        assert "Group/gone is not in the snapshot" in response.json["issue"][0]["diagnostics"]
        assert not (tmp_path / "x" / job_id / "1").exists()
    finally:
        close_store(app)


def test_expired_and_orphaned_files_are_swept(jobs):
    job_id = jobs.submit(ExportRequest(), "https://x", False)
    _run(jobs, _write_one)
    orphan = jobs.directory / "orphan"
    orphan.mkdir()
    assert jobs.sweep() == 0 and jobs.job_dir(job_id).is_dir() and not orphan.exists()
    jobs.clock.now += 61
    assert jobs.get(job_id) is None and jobs.sweep() == 1 and not jobs.job_dir(job_id).exists()


KICKOFFS = [   # level, parameters, what the ExportRequest holds
    ("system", [("_type", "Location,Organization"), ("_type", "Location")],
     {"types": ("Location", "Organization")}),
    ("system", [("_since", "2025-01-02T04:04:05+01:00"), ("_until", "2025-01-03T00:00:00.5Z")],
     {"since": "2025-01-02T03:04:05.000Z", "until": "2025-01-03T00:00:00.500Z"}),
    ("ResearchStudy", [("_typeFilter", "ResearchStudy?status=active,completed&phase=phase-2,"
                                       "Location?address-city=Paris"), ("_typeFilter", "ResearchStudy?_id=rs-1")],
     {"type_filters": {"ResearchStudy": ("status=active,completed&phase=phase-2", "_id=rs-1"),
                       "Location": ("address-city=Paris",)}}),
    ("system", [("_elements", "id,ResearchStudy.status"), ("includeAssociatedData", "LatestProvenanceResources")],
     {"elements": ("id", "ResearchStudy.status"), "include_associated": ("LatestProvenanceResources",)}),
    ("system", [("_outputFormat", "ndjson")], {"output_format": "application/fhir+ndjson"}),
]


@pytest.mark.parametrize("level,pairs,expected", KICKOFFS)
def test_kickoff_parameters(store, level, pairs, expected):
    service = SearchService(store, store.registry, 0)
    request = parse_kickoff(level, pairs, store.registry.served_types, service)
    assert {key: getattr(request, key) for key in expected} == expected
    assert ExportRequest.from_json(request.to_json()) == request


def test_lenient_kickoff_keeps_warnings_and_strict_refuses(store):
    service = SearchService(store, store.registry, 0)
    pairs = [("patient", "Patient/1"), ("_type", "Location,Patient")]
    with pytest.raises(InvalidRequest) as refused:
        parse_kickoff("system", pairs, store.registry.served_types, service)
    assert refused.value.expression == "patient" and refused.value.code == "not-supported"
    request = parse_kickoff("system", pairs, store.registry.served_types, service, lenient=True)
    assert request.types == ("Location",) and len(request.warnings) == 2
