#!/usr/bin/env python3
"""Time to first token through a streaming safety policy vs the same stream unscanned.

Runs `tollgate up` (release build, in-process mock provider) with a SafetyPolicy that
scans answers (secrets block, e-mail redact) for one developer and none for another, then
alternates streamed requests from both keys, timing the first content chunk at the client.
The mock's chunks are paced (x-mock-ttft-ms 20, x-mock-chunk-gap-ms 5) like a real model.

    benches/stream-ttft.py [REQUESTS]          (default 200 per key; needs .venv from scripts/test.sh)
"""

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 200

RESOURCES = """
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec: {provider: mock, models: [{name: mock-1}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: SafetyPolicy
metadata: {name: scan-output}
spec:
  selector: {subjects: [{kind: developer, name: scanned}]}
  output:
    detectors: [{id: "secrets.*", action: block}, {id: pii.email, action: redact}]
"""


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "tollgate"], cwd=REPO, check=True)
    work = Path(tempfile.mkdtemp())
    (work / "res").mkdir()
    (work / "res" / "r.yaml").write_text(RESOURCES)
    admin = "tg-" + secrets.token_urlsafe(24)
    proc = subprocess.Popen(
        [str(TARGET / "release" / "tollgate"), "up", "--listen", "127.0.0.1:0", "--database",
         f"sqlite://{work}/t.db", "--resources", str(work / "res")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "TOLLGATE_ADMIN_KEY": admin, "TOLLGATE_LOG": "warn"})
    try:
        url = None
        for line in proc.stdout:
            if "listening on" in line:
                url = line.split("listening on ")[1].strip()
                break
        def key(name):
            r = httpx.post(url + "/api/v1/keys", headers={"authorization": f"Bearer {admin}"},
                           json={"principal": {"kind": "developer", "name": name}})
            return r.json()["key"]
        keys = {"scanned": key("scanned"), "plain": key("plain")}
        body = {"model": "mock-1", "stream": True,
                "messages": [{"role": "user", "content": "tell me a story about a lighthouse keeper"}]}
        headers = {"x-mock-ttft-ms": "20", "x-mock-chunk-gap-ms": "5", "x-mock-chunks": "12"}
        ttft = {"scanned": [], "plain": []}
        with httpx.Client(timeout=30) as c:
            for i in range(N * 2 + 20):
                who = "scanned" if i % 2 else "plain"
                t0 = time.perf_counter()
                with c.stream("POST", url + "/v1/chat/completions", json=body,
                              headers={**headers, "authorization": f"Bearer {keys[who]}"}) as r:
                    first = None
                    for line in r.iter_lines():
                        if first is None and line.startswith("data: {"):
                            d = json.loads(line[6:])
                            if d.get("choices") and d["choices"][0]["delta"].get("content"):
                                first = time.perf_counter() - t0
                    if i >= 20:  # warm-up
                        ttft[who].append(first * 1000)
        p = {w: statistics.median(v) for w, v in ttft.items()}
        p90 = {w: statistics.quantiles(v, n=10)[-1] for w, v in ttft.items()}
        print(f"{N} streams each; time to first content chunk (ms):")
        print(f"  unscanned  median {p['plain']:.3f}  p90 {p90['plain']:.3f}")
        print(f"  scanned    median {p['scanned']:.3f}  p90 {p90['scanned']:.3f}")
        print(f"  difference median {p['scanned'] - p['plain']:+.3f} ms (target: within 1 ms)")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
