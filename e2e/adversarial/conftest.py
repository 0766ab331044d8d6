"""Adversarial tests of `tollgate up` (issue 17): callers that try to stall the gateway.
They reuse the black-box helpers of e2e/python (the built binaries, the mock provider) and
start their own gateway per test with small timeouts, so each case takes seconds."""

import importlib.util
import socket
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


class Gateway(common.Tollgate):
    """A running `tollgate up` (e2e/python's), with raw sockets and a chat call."""

    def __init__(self, t):
        super().__init__(t.url, t.admin_key, t.proc, t.workdir)
        host, port = t.url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)

    def chat(self, key, content="hello", headers=None, timeout=10.0, **extra):
        return httpx.post(self.url + "/v1/chat/completions",
                          headers={"authorization": f"Bearer {key}", **(headers or {})},
                          json={"model": "mock-1", "messages": [{"role": "user", "content": content}], **extra},
                          timeout=timeout)

    def connect(self, source="127.0.0.1") -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=10, source_address=(source, 0))


def start_gateway(work: Path, resources: str, args=(), nofile: int | None = None) -> Gateway:
    # The hard limit too: the gateway raises its soft limit to the hard one at start.
    wrap = ["prlimit", f"--nofile={nofile}:{nofile}", "--"] if nofile else []
    return Gateway(common.start_tollgate(work, resources, args=args, wrap=wrap))


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
