"""Key lifecycle through the CLI, and plain curl as the README shows it."""

import json
import subprocess
import time

import httpx


def chat(url, key, model="mock-1"):
    return httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": "ping"}]}, timeout=10)


def test_key_create_use_revoke_with_the_cli(tollgate):
    out = tollgate.cli("keys", "create", "--principal", "dave", "--models", "mock-1")
    key = out.stdout.strip()
    assert key.startswith("tg-") and len(key) >= 3 + 22
    assert chat(tollgate.url, key).status_code == 200
    assert chat(tollgate.url, key, "claude-mock").status_code == 403
    listing = tollgate.cli("keys", "list").stdout
    row = [line for line in listing.splitlines() if "dave" in line][0]
    assert key not in listing and key[:9] in row and row.endswith("active")
    key_id = row.split()[0]
    tollgate.cli("keys", "revoke", key_id)
    r = chat(tollgate.url, key)
    assert r.status_code == 401 and r.json()["error"]["code"] == "key_revoked"
    assert tollgate.cli("keys", "list").stdout.count("revoked") >= 1
    assert tollgate.cli("keys", "revoke", "no-such-id", check=False).returncode != 0


def test_key_expiry(tollgate):
    key = tollgate.cli("keys", "create", "--principal", "erin", "--expires-in", "1s").stdout.strip()
    assert chat(tollgate.url, key).status_code == 200
    deadline = time.monotonic() + 10
    while True:
        r = chat(tollgate.url, key)
        if r.status_code == 401:
            assert r.json()["error"]["code"] == "key_expired"
            break
        assert time.monotonic() < deadline, "key never expired"
        time.sleep(0.1)


def test_only_admins_manage_keys(tollgate, dev_key):
    r = httpx.post(tollgate.url + "/api/v1/keys", headers={"authorization": f"Bearer {dev_key}"},
                   json={"principal": {"kind": "developer", "name": "mallory", "role": "admin"}})
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
    # Developers see their own keys only (prefixes, never the keys).
    r = httpx.get(tollgate.url + "/api/v1/keys", headers={"authorization": f"Bearer {dev_key}"})
    assert r.status_code == 200
    assert {k["principal"]["name"] for k in r.json()["items"]} == {"alice"}
    r = tollgate.admin("POST", "/api/v1/keys", content=b"{bad")
    assert r.status_code == 400 and "line 1" in r.json()["error"]["message"]
    r = tollgate.admin("POST", "/api/v1/keys", json={"principal": {"kind": "wizard", "name": "x"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "principal.kind"


def test_curl_chat_and_stream(tollgate, dev_key):
    body = json.dumps({"model": "mock-1", "messages": [{"role": "user", "content": "Hello!"}]})
    out = subprocess.run(["curl", "-sS", "--fail-with-body", tollgate.url + "/v1/chat/completions",
                          "-H", f"Authorization: Bearer {dev_key}", "-H", "Content-Type: application/json", "-d", body],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    assert json.loads(out)["choices"][0]["message"]["content"] == "Mock reply to: Hello!"
    body = json.dumps({"model": "mock-1", "stream": True, "messages": [{"role": "user", "content": "Hi"}]})
    out = subprocess.run(["curl", "-sSN", tollgate.url + "/v1/chat/completions",
                          "-H", f"Authorization: Bearer {dev_key}", "-H", "Content-Type: application/json", "-d", body],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    events = [line[6:] for line in out.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1]) == "Mock reply to: Hi"


def test_usage_records_are_written(tollgate, dev_key):
    assert chat(tollgate.url, dev_key).status_code == 200
    deadline = time.monotonic() + 5
    while True:
        rows = tollgate.admin("GET", "/api/v1/usage/requests?limit=50").json()["items"]
        if any(r["principalName"] == "alice" and r["status"] == 200 and r["inputTokens"] > 0 for r in rows):
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_secrets_never_appear_in_responses_or_logs(tollgate, dev_key):
    r = httpx.post(tollgate.url + "/v1/chat/completions", headers={"authorization": f"Bearer {dev_key}"},
                   json={"model": "claude-mock", "messages": [{"role": "user", "content": "x"}]})
    assert "sk-ant-test-secret-value" not in r.text
    logs = "\n".join(tollgate.proc.stderr + tollgate.proc.lines)
    assert "sk-ant-test-secret-value" not in logs
    assert dev_key not in logs and tollgate.admin_key not in logs
