"""Fixtures that run the real binaries: the mock provider and `tollgate up` on a fresh
SQLite file, each on a free port. Binaries come from $TOLLGATE_BIN_DIR (default
target/debug under $CARGO_TARGET_DIR or the repository)."""

import json
import os
import re
import secrets
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def bin_dir() -> Path:
    if os.environ.get("TOLLGATE_BIN_DIR"):
        return Path(os.environ["TOLLGATE_BIN_DIR"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug"


class Proc:
    """A child process whose stdout lines are collected; waits for a line by regex."""

    def __init__(self, args, env=None, cwd=None):
        self.args = args
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True).start()

    def _read(self, stream, sink):
        for line in stream:
            with self.cond:
                sink.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        with self.cond:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.args[0]} exited: {self.proc.returncode}\n" + "\n".join(self.stderr[-30:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{pattern!r} not seen from {self.args[0]}:\n" + "\n".join(self.lines + self.stderr[-30:]))
                self.cond.wait(left)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="session")
def mock_url():
    p = Proc([str(bin_dir() / "tollgate-mock-provider"), "--listen", "127.0.0.1:0"])
    try:
        addr = p.wait_for(r"listening on (\S+)").group(1)
        yield f"http://{addr}"
    finally:
        p.stop()


RESOURCES = """
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {{name: mock}}
spec:
  provider: mock
  models:
    - name: mock-1
    - name: mock-embedding-1
      kind: embedding
---
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {{name: claude-via-mock, namespace: ai}}
spec:
  provider: anthropic
  baseUrl: {mock}/v1
  secretRef: {{name: anthropic, key: api-key}}
  forwardHeaders: [x-mock-]
  models:
    - name: claude-mock
      upstreamName: claude-sonnet-4-5
---
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {{name: vllm-via-mock, namespace: ai}}
spec:
  provider: openai-compatible
  baseUrl: {mock}/v1
  forwardHeaders: [x-mock-]
  models:
    - name: remote-mock
"""


class Tollgate:
    def __init__(self, url: str, admin_key: str, proc: Proc, workdir: Path):
        self.url = url
        self.admin_key = admin_key
        self.proc = proc
        self.workdir = workdir

    def admin(self, method: str, path: str, **kw) -> httpx.Response:
        return httpx.request(method, self.url + path, headers={"authorization": f"Bearer {self.admin_key}"}, timeout=10, **kw)

    def create_key(self, principal: str = "alice", models=None, expires_in=None, role="developer",
                   kind="developer", team=None) -> str:
        body = {"principal": {"kind": kind, "name": principal, "role": role, "team": team}, "models": models or []}
        if expires_in:
            body["expiresInSeconds"] = expires_in
        r = self.admin("POST", "/api/v1/keys", json=body)
        assert r.status_code == 201, r.text
        return r.json()["key"]

    def cli(self, *args: str, check=True) -> subprocess.CompletedProcess:
        env = {**os.environ, "TOLLGATE_URL": self.url, "TOLLGATE_API_KEY": self.admin_key}
        r = subprocess.run([str(bin_dir() / "tollgate"), *args], capture_output=True, text=True, env=env, timeout=30)
        if check:
            assert r.returncode == 0, r.stderr
        return r


def start_tollgate(work: Path, resources: str, database: str | None = None, args=(), env=None,
                   admin_key: str | None = None, wrap=()) -> Tollgate:
    """Runs `tollgate up` on a free port with `resources` (YAML text) and waits until ready.
    `wrap` goes before the command (`prlimit --nofile=256:256 --`)."""
    res = work / "resources"
    res.mkdir(parents=True, exist_ok=True)
    (res / "resources.yaml").write_text(resources)
    admin_key = admin_key or "tg-" + secrets.token_urlsafe(24)
    env = {"TOLLGATE_ADMIN_KEY": admin_key, **(env or {})}
    p = Proc(
        [*wrap, str(bin_dir() / "tollgate"), "up", "--listen", "127.0.0.1:0", "--database",
         database or f"sqlite://{work}/t.db", "--resources", str(res), *args],
        env=env,
        cwd=work,
    )
    try:
        url = p.wait_for(r"listening on (http://\S+)").group(1)
        deadline = time.monotonic() + 10
        while httpx.get(url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    except BaseException:
        p.stop()
        raise
    return Tollgate(url, admin_key, p, work)


@pytest.fixture(scope="session")
def tollgate(mock_url, tmp_path_factory):
    work = tmp_path_factory.mktemp("tollgate")
    t = start_tollgate(work, RESOURCES.format(mock=mock_url),
                       env={"TOLLGATE_SECRET_ANTHROPIC_API_KEY": "sk-ant-test-secret-value"})
    try:
        yield t
    finally:
        t.proc.stop()


@pytest.fixture(scope="session")
def dev_key(tollgate) -> str:
    return tollgate.create_key("alice")


def parse_json_lines(text: str):
    return [json.loads(line) for line in text.splitlines() if line.strip()]
