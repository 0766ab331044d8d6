"""SIGTERM during 100 open streams: readiness turns false, new requests are refused, and
every stream in flight finishes within the shutdown deadline."""

import json
import signal
import threading
import time

import httpx

from conftest import start_tollgate

MOCK = """
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models: [{name: mock-1}]
"""


def test_sigterm_lets_100_open_streams_finish(tmp_path):
    t = start_tollgate(tmp_path, MOCK, args=["--shutdown-seconds", "20"])
    key = t.create_key("alice")
    started = threading.Barrier(101)
    results: list[str] = []
    lock = threading.Lock()

    def stream(i):
        body = {"model": "mock-1", "stream": True, "messages": [{"role": "user", "content": f"stream {i}"}]}
        headers = {"authorization": f"Bearer {key}", "x-mock-chunks": "10", "x-mock-chunk-gap-ms": "200"}
        text = ""
        try:
            with httpx.stream("POST", t.url + "/v1/chat/completions", json=body, headers=headers, timeout=30) as r:
                first = True
                for line in r.iter_lines():
                    if first:
                        first = False
                        started.wait(timeout=20)
                    text += line + "\n"
        except Exception as e:  # noqa: BLE001 - recorded as a failure below
            text += f"EXCEPTION {e!r}"
        with lock:
            results.append(text)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(100)]
    for th in threads:
        th.start()
    started.wait(timeout=30)  # every stream has its first bytes
    t0 = time.monotonic()
    t.proc.proc.send_signal(signal.SIGTERM)
    # Readiness turns false and new requests are refused while the streams drain.
    deadline = time.monotonic() + 5
    while True:
        try:
            ready = httpx.get(t.url + "/readyz", timeout=2).status_code
        except httpx.HTTPError:
            ready = None
        if ready != 200:
            break
        assert time.monotonic() < deadline, "readiness stayed true after SIGTERM"
        time.sleep(0.02)
    try:
        r = httpx.post(t.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": "mock-1", "messages": [{"role": "user", "content": "late"}]}, timeout=5)
        assert r.status_code == 503 and r.json()["error"]["code"] == "shutting_down"
    except httpx.ConnectError:
        pass  # the listener may already be closed: refused either way
    for th in threads:
        th.join(timeout=30)
    took = time.monotonic() - t0
    assert len(results) == 100
    unfinished = [r for r in results if not r.rstrip().endswith("data: [DONE]")]
    assert not unfinished, f"{len(unfinished)} streams cut short, e.g. {unfinished[0][-200:]}"
    for r in results:
        content = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                          for line in r.splitlines() if line.startswith("data: {") and '"choices":[{' in line)
        assert content.startswith("Mock reply to: stream")
    assert t.proc.proc.wait(timeout=25) == 0
    assert took < 20, f"drained in {took:.1f}s, past the deadline"
