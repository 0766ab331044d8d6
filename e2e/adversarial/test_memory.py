"""Memory per request is bounded and goes back after a burst (issue 17, item 4): bodies of
100,000 tiny messages are refused before they are parsed into trees (once 66-160 MB each),
and after 30 concurrent 3 MB requests the gateway gives the memory back to the system."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Peak:
    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, rss_mb(pid), threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def burst(g, key, body: str, n: int = 30):
    def post(_):
        return httpx.post(g.url + "/v1/chat/completions", content=body, timeout=120,
                          headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(post, range(n)))


def test_memory_per_request_is_bounded_and_given_back(gateway_factory):
    g = gateway_factory()
    key = g.create_key()
    pid = g.proc.proc.pid
    assert g.chat(key).status_code == 200
    idle = rss_mb(pid)

    tiny = json.dumps({"model": "mock-1", "messages": [{"role": "user", "content": "a"}] * 100_000})
    with Peak(pid) as p:
        answers = burst(g, key, tiny)
    assert {r.status_code for r in answers} == {400}, answers[0].text
    assert "objects and arrays" in answers[0].json()["error"]["message"]
    # The bodies themselves are 30 x 3.4 MB; no tree was built from them.
    assert p.peak - idle < 200, f"peak {p.peak:.0f} MB over {idle:.0f} MB idle"

    large = json.dumps({"model": "mock-1", "messages": [{"role": "user", "content": "word " * 300}] * 2000})
    with Peak(pid) as p:
        answers = burst(g, key, large)
    assert {r.status_code for r in answers} == {200}
    deadline = time.monotonic() + 30
    while rss_mb(pid) > idle + 80:
        assert time.monotonic() < deadline, (
            f"RSS stays at {rss_mb(pid):.0f} MB after a burst that peaked at {p.peak:.0f} MB (idle {idle:.0f} MB)")
        time.sleep(0.5)
