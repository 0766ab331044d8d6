"""No single caller can stall the gateway (issue 17, items 1-3): half-sent heads, silent
connections under a low descriptor limit, slow bodies, one key taking every place, and
huge adversarial prompts scanned by a safety policy. Each test starts its own `tollgate up`
with small timeouts; every wait is bounded."""

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

FAST = ["--header-timeout-seconds", "2", "--idle-timeout-seconds", "3",
        "--body-timeout-seconds", "4", "--body-idle-seconds", "2"]


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Reads until the server closes the connection; how long that took, or None when it is
    still open after `seconds`."""
    started = time.monotonic()
    deadline = started + seconds
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
            if not sock.recv(65536):
                return time.monotonic() - started
    except socket.timeout:
        return None
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - started


def response_status(sock: socket.socket, seconds: float) -> int | None:
    """The status of the first response on `sock`, or None if none arrives in time."""
    deadline = time.monotonic() + seconds
    data = b""
    try:
        while b"\r\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
            chunk = sock.recv(4096)
            if not chunk:
                return None
            data += chunk
    except (socket.timeout, ConnectionResetError):
        return None
    return int(data.split(b" ", 2)[1])


def test_a_half_sent_request_head_is_cut(gateway_factory):
    g = gateway_factory(args=FAST)
    half = g.connect()
    half.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
    # A trickle: one byte of the head every half second never completes it.
    trickle = g.connect()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100
    closed = None
    started = time.monotonic()
    for i, byte in enumerate(head):
        try:
            trickle.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed = time.monotonic() - started
            break
        if closed_within(trickle, 0.5) is not None:
            closed = time.monotonic() - started
            break
    assert closed is not None and closed < 6, f"a trickled head stayed open {closed}"
    took = closed_within(half, 8)
    assert took is not None and took < 6, "a half-sent head must be cut by the header timeout"
    # The gateway is fine.
    assert httpx.get(g.url + "/healthz", timeout=5).status_code == 200


def test_silent_connections_neither_pile_up_nor_lock_others_out(gateway_factory):
    # 256 descriptors: without caps and timeouts, 400 silent connections would take them all.
    g = gateway_factory(args=[*FAST, "--max-connections-per-address", "50"], nofile=256)
    key = g.create_key()
    flood = []
    for _ in range(400):
        try:
            flood.append(g.connect(source="127.0.0.2"))
        except OSError:
            break
    assert len(flood) >= 100
    started = time.monotonic()
    r = g.chat(key, timeout=5)
    assert r.status_code == 200, r.text
    assert time.monotonic() - started < 3, "another caller must be served at once"
    # Every silent connection is closed: past the cap at once, the rest by the header timeout.
    deadline = time.monotonic() + 10
    still_open = sum(1 for s in flood if closed_within(s, max(0.05, deadline - time.monotonic())) is None)
    assert still_open == 0, f"{still_open} silent connections still open"
    for s in flood:
        s.close()
    assert g.chat(key, timeout=5).status_code == 200


def test_slow_bodies_hold_no_place_and_are_cut(gateway_factory):
    # An in-flight cap far below the number of slow callers.
    g = gateway_factory(args=[*FAST, "--max-in-flight", "20"])
    slow_key, other_key = g.create_key("slow"), g.create_key("other")
    body = json.dumps({"model": "mock-1", "messages": [{"role": "user", "content": "hello"}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {slow_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    slow = []
    for _ in range(150):
        s = g.connect()
        s.sendall(head + body[:10])
        slow.append(s)
    started = time.monotonic()
    for key in (other_key, slow_key):
        r = g.chat(key, timeout=5)
        assert r.status_code == 200, r.text
    assert time.monotonic() - started < 3
    # Each slow body is cut with a 408 once it stalls past the body idle timeout.
    statuses = [response_status(s, 10) for s in slow]
    assert statuses.count(408) == len(slow), statuses
    for s in slow:
        s.close()


def test_one_key_cannot_take_every_place(gateway_factory):
    g = gateway_factory(args=["--max-in-flight-per-key", "3"])
    greedy, other = g.create_key("greedy"), g.create_key("other")
    slow = {"x-mock-latency-ms": "2000"}
    with ThreadPoolExecutor(8) as ex:
        futures = [ex.submit(g.chat, greedy, headers=slow) for _ in range(6)]
        # While the greedy key's requests run, another key is served.
        r = g.chat(other, timeout=5)
        statuses = sorted(f.result().status_code for f in futures)
    assert r.status_code == 200
    assert statuses == [200, 200, 200, 429, 429, 429], statuses
    refused = [f.result() for f in futures if f.result().status_code == 429][0]
    assert refused.json()["error"]["code"] == "too_many_concurrent_requests"
    assert refused.headers["retry-after"] == "1"


POLICY = """
---
apiVersion: tollgate.dev/v1alpha1
kind: SafetyPolicy
metadata: {name: audit-pii}
spec:
  input:
    detectors:
      - {id: "pii.*", action: log}
      - {id: "secrets.*", action: log}
"""


def test_huge_adversarial_prompts_do_not_stall_anyone(gateway_factory):
    g = gateway_factory(extra_resources=POLICY)
    key = g.create_key()
    # 3.5 MB of back-to-back e-mail addresses (once 16 s per MB and a frozen gateway) and
    # of assignments, two at a time.
    prompts = ["a.b@c.de " * 390_000, "password=" * 390_000]
    latencies = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            t = time.monotonic()
            httpx.get(g.url + "/healthz", timeout=10)
            latencies.append(time.monotonic() - t)
            time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with ThreadPoolExecutor(2) as ex:
            results = list(ex.map(lambda p: g.chat(key, content=p, timeout=120), prompts))
    finally:
        stop.set()
        prober.join()
    assert [r.status_code for r in results] == [200, 200], [r.text[:200] for r in results]
    assert latencies and max(latencies) < 1.0, f"/healthz took up to {max(latencies):.2f} s during the scans"
