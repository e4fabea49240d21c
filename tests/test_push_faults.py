"""Pushing through faults: a local proxy that answers 503 and 429 at random (with Retry-After) and
drops connections, before and after forwarding; every trial must arrive exactly once."""
from __future__ import annotations

import http.client
import http.server
import random
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

import pytest

from _peer_fixtures import all_trials, free_port, own_server, peer_r4, peer_r5  # noqa: F401
from fhirstudy.errors import RemoteRejected, TransportError
from fhirstudy.push import FhirClient, make_session, push_trials
from fhirstudy.push.push import prepare_trial

FAULTS = (("503", 0.15), ("429", 0.10), ("drop-before", 0.08), ("drop-after", 0.07))


class FaultProxy:
    """A threaded HTTP proxy in front of ``target`` answering faults at random (seeded)."""

    def __init__(self, target: str, seed: int = 5, faults=FAULTS, script: list[str] | None = None):
        self.target = urlsplit(target)
        self.random = random.Random(seed)
        self.faults = faults
        self.script = list(script or [])   # faults to answer first, in order, then at random
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _fault(self) -> str:
                with proxy.lock:
                    if proxy.script:
                        return proxy.script.pop(0)
                    roll = proxy.random.random()
                    for name, p in proxy.faults:
                        if roll < p:
                            return name
                        roll -= p
                    return "pass"

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = self._fault()
                with proxy.lock:
                    proxy.seen[fault] += 1
                if fault in ("503", "429"):
                    return self._answer(int(fault), b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient"}]}',
                                        {"Retry-After": "0"})
                if fault == "drop-before":
                    self.close_connection = True
                    return None
                conn = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                conn.close()
                if fault == "drop-after":  # the server did it; the client never hears
                    self.close_connection = True
                    return None
                keep = {k: v for k, v in answer.getheaders() if k.lower() not in ("transfer-encoding", "connection", "content-length")}
                return self._answer(answer.status, data, keep)

            def _answer(self, status, data, headers):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


TARGETS = {"peer-r4": "peer_r4", "peer-r5": "peer_r5", "fhirstudy": "own_server"}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_trial_arrives_exactly_once_through_faults(name, request, all_trials):
    target = request.getfixturevalue(TARGETS[name])
    target.wipe()
    # first: each fault once (metadata: 503, 429, dropped; the first transaction: answer lost), then at random
    script = ["503", "429", "drop-before", "pass", "pass", "drop-after"]
    with FaultProxy(target.url, script=script) as proxy:
        client = FhirClient(proxy.url, session=make_session(retries=12, backoff=0.01), token=target.token)
        report = push_trials(client, all_trials, chunk_trials=2)
        client.close()
    assert report.counts["failed"] == 0, [t.error for t in report.trials if t.error]
    assert report.counts["created"] + report.counts["unchanged"] == len(all_trials)
    assert proxy.seen["503"] and proxy.seen["429"] and proxy.seen["drop-before"] and proxy.seen["drop-after"]

    direct = FhirClient(target.url, token=target.token)
    expected = Counter(r["resourceType"] for t in all_trials for r in prepare_trial(t, target.fhir_version).resources)
    stored = {t: direct.search(t, {"_count": "500"}) for t in expected}
    assert Counter({t: len(v) for t, v in stored.items()}) == expected   # nothing twice, nothing missing
    for trial in all_trials:
        nct = next((i for i in trial[0].get("identifier", []) if i.get("system") == "https://clinicaltrials.gov"), None)
        if nct:
            assert len(direct.search("ResearchStudy", {"identifier": f"{nct['system']}|{nct['value']}"})) == 1
    # a replayed transaction (response lost) matched ifNoneExist / failed ifMatch: no new versions
    assert {r["meta"]["versionId"] for rs in stored.values() for r in rs} == {"1"}
    direct.close()


def test_retry_after_is_honoured(peer_r5):
    with FaultProxy(peer_r5.url, faults=(), script=["503"]) as proxy:
        client = FhirClient(proxy.url, session=make_session(retries=3, backoff=0.0))
        started = time.perf_counter()
        assert client.fhir_version() == "5.0"
        client.close()
    assert proxy.seen["503"] == 1 and proxy.seen["pass"] == 1
    assert time.perf_counter() - started < 5


def test_retry_after_seconds_waited(peer_r5):
    """A 429 with Retry-After: 1 makes the client wait a second before sending again."""
    import requests

    with FaultProxy(peer_r5.url, faults=()) as proxy:
        orig = proxy.server.RequestHandlerClass._answer
        calls = {"n": 0}

        def slow_first(self, status, data, headers):
            calls["n"] += 1
            if calls["n"] == 1:
                return orig(self, 429, b"{}", {"Retry-After": "1"})
            return orig(self, status, data, headers)

        proxy.server.RequestHandlerClass._answer = slow_first
        client = FhirClient(proxy.url, session=make_session(retries=3, backoff=0.0))
        started = time.perf_counter()
        client.metadata()
        assert time.perf_counter() - started >= 0.95
        client.close()
        assert isinstance(client.session, requests.Session)


def test_client_errors_are_not_retried(peer_r5):
    with FaultProxy(peer_r5.url, faults=()) as proxy:
        client = FhirClient(proxy.url, session=make_session(retries=5, backoff=0.0))
        with pytest.raises(RemoteRejected) as caught:
            client.search("ResearchStudy", {"no-such-parameter": "x"})
        client.close()
    assert caught.value.status == 400 and caught.value.outcome["resourceType"] == "OperationOutcome"
    assert sum(proxy.seen.values()) == 1


def test_unreachable_server_is_a_transport_error():
    client = FhirClient(f"http://127.0.0.1:{free_port()}", session=make_session(retries=1, backoff=0.0))
    with pytest.raises(TransportError):
        client.metadata()
    client.close()
