"""Adversarial tests of `tollgate up` (issue 17): callers that try to stall the gateway.
They reuse the black-box helpers of e2e/python (the built binaries, the mock provider) and
start their own gateway per test with small timeouts, so each case takes seconds."""

import importlib.util
import secrets
import socket
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("tollgate_e2e_common", REPO / "e2e" / "python" / "conftest.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)

Proc = common.Proc
bin_dir = common.bin_dir


# The mock provider, started once for the session (the same fixture as e2e/python's).
mock_url = common.mock_url


RESOURCES = """
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {{name: mock}}
spec:
  provider: openai-compatible
  baseUrl: {mock}/v1
  forwardHeaders: [x-mock-]
  models:
    - {{name: mock-1, prices: {{inputPerMtok: "1", outputPerMtok: "2"}}}}
"""


class Gateway:
    def __init__(self, url, admin_key, proc):
        self.url = url
        self.admin_key = admin_key
        self.proc = proc
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)

    def create_key(self, principal="alice") -> str:
        r = httpx.post(self.url + "/api/v1/keys", headers={"authorization": f"Bearer {self.admin_key}"},
                       json={"principal": {"kind": "developer", "name": principal, "role": "developer"},
                             "models": []}, timeout=10)
        assert r.status_code == 201, r.text
        return r.json()["key"]

    def chat(self, key, content="hello", headers=None, timeout=10.0, **extra):
        return httpx.post(self.url + "/v1/chat/completions",
                          headers={"authorization": f"Bearer {key}", **(headers or {})},
                          json={"model": "mock-1", "messages": [{"role": "user", "content": content}], **extra},
                          timeout=timeout)

    def connect(self, source="127.0.0.1") -> socket.socket:
        s = socket.create_connection((self.host, self.port), timeout=10, source_address=(source, 0))
        return s


def start_gateway(work: Path, resources: str, args=(), nofile: int | None = None) -> Gateway:
    res = work / "resources"
    res.mkdir(parents=True, exist_ok=True)
    (res / "resources.yaml").write_text(resources)
    admin_key = "tg-" + secrets.token_urlsafe(24)
    cmd = [str(bin_dir() / "tollgate"), "up", "--listen", "127.0.0.1:0", "--database",
           f"sqlite://{work}/t.db", "--resources", str(res), *args]
    if nofile:
        # The hard limit too: the gateway raises its soft limit to the hard one at start.
        cmd = ["prlimit", f"--nofile={nofile}:{nofile}", "--", *cmd]
    p = Proc(cmd, env={"TOLLGATE_ADMIN_KEY": admin_key}, cwd=work)
    try:
        url = p.wait_for(r"listening on (http://\S+)").group(1)
        deadline = time.monotonic() + 15
        while httpx.get(url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    except BaseException:
        p.stop()
        raise
    return Gateway(url, admin_key, p)


@pytest.fixture
def gateway_factory(mock_url, tmp_path):
    started = []

    def make(extra_resources="", args=(), nofile=None):
        g = start_gateway(tmp_path / f"g{len(started)}", RESOURCES.format(mock=mock_url) + extra_resources,
                          args=args, nofile=nofile)
        started.append(g)
        return g

    yield make
    for g in started:
        g.proc.stop()
