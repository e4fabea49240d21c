"""The real `fhirstudy serve` (gunicorn, a subprocess on a free port) against clients that are
slow, large or malformed: the server keeps answering others, and every refusal, gunicorn's own
included, is an OperationOutcome."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

FHIRSTUDY = [sys.executable, "-m", "fhirstudy.cli"]
BASE_URL = "https://fhir.example.org/r5"
MAX_BODY_MB = 0.05                 # the server under test takes 52,428-byte bodies at most
MAX_BODY = int(MAX_BODY_MB * 2**20)
STARTUP_SECONDS = 30
PROMPT_SECONDS = 10                # generous: a free server answers /metadata in milliseconds
TRICKLE_SECONDS = 1                # one header line per slow client this often


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`fhirstudy serve` (gunicorn, 2 workers, default threads) with --base-url and --max-body-mb;
    yields (host, port)."""
    db = f"sqlite:///{tmp_path_factory.mktemp('limits') / 'fhirstudy.db'}"
    port = _free_port()
    proc = subprocess.Popen([*FHIRSTUDY, "serve", "--port", str(port), "--db", db, "--workers", "2",
                             "--base-url", BASE_URL, "--max-body-mb", str(MAX_BODY_MB)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/metadata", timeout=1)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("fhirstudy serve did not start")
            time.sleep(0.1)
    yield "127.0.0.1", port
    proc.terminate()
    proc.wait(timeout=30)


def _raw(server, data: bytes, read_timeout: float = PROMPT_SECONDS) -> tuple[int, dict, bytes]:
    """Send ``data`` as is; (status, headers, body) of the answer."""
    with socket.create_connection(server, timeout=read_timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def _outcome(headers: dict, body: bytes) -> dict:
    assert headers["content-type"] == "application/fhir+json", body[:200]
    outcome = json.loads(body[:int(headers["content-length"])])
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "error"
    return outcome


# --- 8. slow clients do not freeze the server -----------------------------------------------------------

@pytest.mark.parametrize("slow_clients", [2, 8])
def test_slow_clients_do_not_hold_the_server(server, slow_clients):
    stop = threading.Event()
    sockets = []
    for _ in range(slow_clients):
        sock = socket.create_connection(server, timeout=PROMPT_SECONDS)
        sock.sendall(b"GET /metadata HTTP/1.1\r\nHost: slow\r\n")
        sockets.append(sock)

    def trickle():
        n = 0
        while not stop.wait(TRICKLE_SECONDS):
            n += 1
            for sock in sockets:
                sock.sendall(f"X-Slow-{n}: 1\r\n".encode())

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(TRICKLE_SECONDS * 2)  # the slow clients are in their headers now
        host, port = server
        for _ in range(4):  # enough requests to reach both workers
            response = requests.get(f"http://{host}:{port}/metadata", timeout=PROMPT_SECONDS)
            assert response.status_code == 200 and response.json()["resourceType"] == "CapabilityStatement"
    finally:
        stop.set()
        trickler.join(timeout=PROMPT_SECONDS)
        for sock in sockets:
            sock.close()


# --- 6. what gunicorn refuses itself is an OperationOutcome too; the app answers 414/431 ---------------

RAW_REQUESTS = [
    # (raw request, status)
    (b"get /metadata HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("GET /m\u00e9tadata HTTP/1.1\r\nHost: x\r\n\r\n".encode("utf-8"), 400),
    (b"GET /metadata HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
    (b"GET /metadata HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"x" * 20000 + b"\r\n\r\n", 431),
    (b"GET /metadata HTTP/1.1\r\nHost: x\r\nX-Big: " + b"x" * 9000 + b"\r\n\r\n", 431),
    (b"GET /Location?name=" + b"x" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /metadata HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(150)) + b"\r\n", 431),
]


@pytest.mark.parametrize("raw,status", RAW_REQUESTS)
def test_refusals_are_operation_outcomes(server, raw, status):
    got, headers, body = _raw(server, raw)
    assert got == status
    _outcome(headers, body)


# --- 9. body size: declared or chunked -----------------------------------------------------------------

def test_a_declared_length_over_the_limit_is_413_without_reading_it(server):
    head = (b"POST /ResearchStudy/$validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
            b"Content-Length: 209715200\r\n\r\n{")
    status, headers, body = _raw(server, head)
    assert status == 413
    assert str(MAX_BODY) in _outcome(headers, body)["issue"][0]["diagnostics"]


def _chunked_validate(title_bytes: int) -> bytes:
    doc = b'{"resourceType":"ResearchStudy","status":"active","title":"' + b"x" * title_bytes + b'"}'
    chunks = [doc[i:i + 8192] for i in range(0, len(doc), 8192)]
    return (b"POST /ResearchStudy/$validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n")


def test_a_chunked_body_over_the_limit_is_413(server):
    status, headers, body = _raw(server, _chunked_validate(MAX_BODY))
    assert status == 413
    assert str(MAX_BODY) in _outcome(headers, body)["issue"][0]["diagnostics"]


def test_a_chunked_body_under_the_limit_is_taken(server):
    status, headers, body = _raw(server, _chunked_validate(MAX_BODY // 2))
    assert status == 200
    assert json.loads(body)["issue"][0]["severity"] == "information"


# --- 6. the base URL comes from the configuration, not the Host header ----------------------------------

def test_base_url_from_configuration_not_host(server):
    host, port = server
    bundle = requests.get(f"http://{host}:{port}/ResearchStudy", headers={"Host": "evil.example"},
                          timeout=PROMPT_SECONDS).json()
    assert all(link["url"].startswith(f"{BASE_URL}/ResearchStudy") for link in bundle["link"])
    metadata = requests.get(f"http://{host}:{port}/metadata", headers={"Host": "evil.example"},
                            timeout=PROMPT_SECONDS)
    assert "evil.example" not in metadata.text


def test_a_worker_freezes_what_it_made_while_starting(monkeypatch):
    """After its export runner starts, a gunicorn worker moves what the app made while loading out
    of the garbage collector's way (``gc.freeze``: its full collections had added about 90 ms to
    one request in sixteen)."""
    import gc
    import types

    from fhirstudy.server import bulk, wsgi

    started = []
    monkeypatch.setattr(bulk, "start_runner", started.append)
    gc.unfreeze()
    try:
        wsgi._post_worker_init(types.SimpleNamespace(wsgi="the app"))
        assert started == ["the app"] and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
