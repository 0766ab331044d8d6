"""The `tollgate` CLI end to end against a running `tollgate up`: every command, each output
format, and the error cases with their exit codes (3 auth, 4 not found, 5 refused, 1
unreachable)."""

import json
import os
import secrets
import subprocess

import httpx
import pytest
import yaml

from conftest import bin_dir, start_tollgate

FILES = """
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models:
    - {name: mock-1, prices: {inputPerMtok: "1", outputPerMtok: "2"}}
"""

BUDGETS = """
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: team-a}
spec: {subject: {kind: team, name: team-a}, limit: "100", period: monthly}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: alice}
spec: {subject: {kind: developer, name: alice}, limit: "10", period: daily, parent: team-a}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    t = start_tollgate(tmp_path_factory.mktemp("cli"), FILES)
    yield t
    t.proc.stop()


def run(gw, *args, key=None, env=None, check=None):
    e = {**os.environ, "TOLLGATE_URL": gw.url, "TOLLGATE_API_KEY": key or gw.admin_key,
         "TOLLGATE_CONFIG": str(gw.workdir / "no-config.yaml"), **(env or {})}
    r = subprocess.run([str(bin_dir() / "tollgate"), *args], capture_output=True, text=True, env=e, timeout=30)
    if check is not None:
        assert r.returncode == check, f"{args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def test_apply_get_delete_in_every_format(gw, tmp_path):
    (tmp_path / "budgets.yaml").write_text(BUDGETS)
    out = run(gw, "apply", "-f", str(tmp_path), check=0).stdout
    assert out.splitlines() == ["budget/default/team-a created", "budget/default/alice created"]
    assert run(gw, "apply", "-f", str(tmp_path), check=0).stdout.splitlines()[0] == "budget/default/team-a unchanged"
    (tmp_path / "budgets.yaml").write_text(BUDGETS.replace('limit: "10"', 'limit: "12"'))
    assert "budget/default/alice configured" in run(gw, "apply", "-f", str(tmp_path), check=0).stdout

    table = run(gw, "get", "budgets", check=0).stdout.splitlines()
    assert table[0].split() == ["KIND", "NAMESPACE", "NAME", "SOURCE", "DETAIL"]
    assert any(line.split()[:4] == ["Budget", "default", "alice", "api"] and "12" in line for line in table)
    docs = json.loads(run(gw, "get", "budgets", "-o", "json", check=0).stdout)
    assert {d["metadata"]["name"] for d in docs} == {"team-a", "alice"}
    one = yaml.safe_load(run(gw, "get", "budget", "alice", "-o", "yaml", check=0).stdout)
    assert one["spec"]["parent"] == "team-a"
    everything = run(gw, "get", "all", check=0).stdout
    assert "IPToken" in everything and "file" in everything, "file resources are listed, marked read-only"

    # Refusals: exit 5 with the reason; not found: exit 4; unknown kind: exit 1 with the kinds.
    (tmp_path / "bad.yaml").write_text(BUDGETS.replace("parent: team-a", "parent: nowhere"))
    r = run(gw, "apply", "-f", str(tmp_path / "bad.yaml"), check=5)
    assert "nowhere" in r.stderr
    r = run(gw, "delete", "budget", "team-a", check=5)
    assert "compile" in r.stderr, "alice still names team-a as parent"
    r = run(gw, "delete", "iptoken", "mock", check=5)
    assert "resource file" in r.stderr
    run(gw, "get", "budget", "nope", check=4)
    r = run(gw, "get", "widgets", check=1)
    assert "iptokens" in r.stderr

    assert run(gw, "delete", "-f", str(tmp_path / "budgets.yaml"), check=0).stdout.splitlines() == [
        "budgets/default/alice deleted", "budgets/default/team-a deleted"]
    run(gw, "delete", "budget", "alice", check=4)


def test_token_add_keeps_the_key_write_only(gw):
    secret = "sk-cli-canary-93b1f0"
    r = run(gw, "token", "add", "local-llm", "--provider", "openai-compatible", "--base-url", "http://127.0.0.1:9/v1",
            "--from-env", "LOCAL_LLM_KEY", "--model", "llama-3", env={"LOCAL_LLM_KEY": secret}, check=0)
    assert "iptoken/default/local-llm ready" in r.stdout
    shown = run(gw, "get", "iptokens", "-o", "json", check=0).stdout
    assert secret not in shown and "local-llm" in shown
    audit = httpx.get(gw.url + "/api/v1/audit", headers={"authorization": f"Bearer {gw.admin_key}"}).text
    assert secret not in audit and "set-provider-key" in audit
    models = httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {gw.admin_key}"}).json()
    assert "llama-3" in {m["id"] for m in models["data"]}, "the new token is in force"
    r = run(gw, "token", "add", "x", "--provider", "openai", "--from-env", "UNSET_VAR_FOR_TEST", "--model", "m", check=1)
    assert "UNSET_VAR_FOR_TEST" in r.stderr


def test_keys_whoami_usage_and_budgets(gw):
    created = run(gw, "keys", "create", "--principal", "alice", "--team", "team-a", check=0)
    dev_key = created.stdout.strip()
    assert dev_key.startswith("tg-")
    who = json.loads(run(gw, "whoami", "-o", "json", key=dev_key, check=0).stdout)
    assert (who["principal"]["name"], who["role"]) == ("alice", "developer")
    assert run(gw, "whoami", key=dev_key, check=0).stdout.splitlines()[1].split()[:2] == ["developer/alice", "developer"]

    for _ in range(3):
        r = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {dev_key}"},
                       json={"model": "mock-1", "messages": [{"role": "user", "content": "hello"}]})
        assert r.status_code == 200
    httpx.post(gw.url + "/api/v1/scheduler/jobs/usage-rollups/run", headers={"authorization": f"Bearer {gw.admin_key}"})
    usage = json.loads(run(gw, "usage", "--by", "model", "-o", "json", check=0).stdout)
    assert {g["key"]: g["requests"] for g in usage["groups"]}["mock-1"] >= 3
    mine = json.loads(run(gw, "usage", "--me", "-o", "json", key=dev_key, check=0).stdout)
    assert mine["total"]["requests"] == 3
    table = run(gw, "usage", "--me", "--by", "day", key=dev_key, check=0).stdout
    assert table.splitlines()[0].split()[0] == "DAY" and "TOTAL" in table
    run(gw, "usage", "--principal", "bob", key=dev_key, check=3)
    run(gw, "usage", "--by", "colour", check=5)

    listing = run(gw, "keys", "list", check=0).stdout
    assert "alice" in listing and dev_key not in listing
    key_id = next(k["id"] for k in httpx.get(gw.url + "/api/v1/keys", headers={"authorization": f"Bearer {dev_key}"}).json()["items"])
    rotated = run(gw, "keys", "rotate", key_id, check=0).stdout.strip()
    assert rotated.startswith("tg-") and rotated != dev_key
    run(gw, "whoami", key=dev_key, check=3)
    run(gw, "whoami", key=rotated, check=0)
    run(gw, "keys", "create", "--principal", "x", key=rotated, check=3)
    run(gw, "keys", "revoke", "no-such-id", check=4)

    header = run(gw, "budget", "list", check=0).stdout.splitlines()[0].split()
    assert header[:2] == ["NAME", "SUBJECT"] and "SPENT" in header
    run(gw, "budget", "show", "nothing", check=4)


def test_admin_recover_and_the_preset_key_always_get_back_in(tmp_path):
    db = f"sqlite://{tmp_path}/server.db"
    preset = "tg-" + secrets.token_urlsafe(24)
    recover = lambda database: subprocess.run(  # noqa: E731
        [str(bin_dir() / "tollgate"), "admin", "recover", "--database", database],
        capture_output=True, text=True, timeout=30, env={**os.environ, "TOLLGATE_CONFIG": str(tmp_path / "none.yaml")})
    t = start_tollgate(tmp_path / "first", FILES, database=db, admin_key=preset)
    try:
        # The preset key is the only admin key: it may not lock everyone out.
        preset_id = t.admin("GET", "/api/v1/whoami").json()["keyId"]
        r = t.admin("DELETE", f"/api/v1/keys/{preset_id}")
        assert (r.status_code, r.json()["error"]["code"]) == (409, "last_admin_key"), r.text
        # On the server's machine, with its database: a new admin key, printed once, working at once.
        r = recover(db)
        assert r.returncode == 0, r.stderr
        key = r.stdout.strip()
        assert key.startswith("tg-") and r.stdout.count("\n") == 1 and "shown once" in r.stderr
        who = json.loads(run(t, "whoami", "-o", "json", key=key, check=0).stdout)
        assert (who["principal"]["name"], who["role"]) == ("tollgate:admin", "admin")
        audit = httpx.get(t.url + "/api/v1/audit?action=recover-admin", headers={"authorization": f"Bearer {key}"})
        assert len(audit.json()["items"]) == 1, audit.text
        # Now the preset key may go (another admin key works) ...
        run(t, "keys", "revoke", preset_id, key=key, check=0)
        run(t, "whoami", key=preset, check=3)
    finally:
        t.proc.stop()
    # ... and a start with the same TOLLGATE_ADMIN_KEY restores it.
    t = start_tollgate(tmp_path / "second", FILES, database=db, admin_key=preset)
    try:
        who = json.loads(run(t, "whoami", "-o", "json", key=preset, check=0).stdout)
        assert who["role"] == "admin"
    finally:
        t.proc.stop()
    # A mistyped path is refused rather than "recovered" into a new, empty database.
    r = recover(f"sqlite://{tmp_path}/typo.db")
    assert r.returncode == 1 and "no database" in r.stderr
    assert not (tmp_path / "typo.db").exists()


def test_login_completions_and_unreachable_server(gw, tmp_path):
    config = tmp_path / "config.yaml"
    r = run(gw, "login", env={"TOLLGATE_CONFIG": str(config)}, check=0)
    assert "logged in" in r.stdout
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    # Later commands need neither flag nor variable.
    env = {k: v for k, v in os.environ.items() if k not in ("TOLLGATE_URL", "TOLLGATE_API_KEY")}
    env["TOLLGATE_CONFIG"] = str(config)
    r = subprocess.run([str(bin_dir() / "tollgate"), "whoami", "-o", "json"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["role"] == "admin"

    out = run(gw, "completion", "bash", check=0).stdout
    assert "complete" in out and "tollgate" in out
    r = run(gw, "whoami", env={"TOLLGATE_URL": "http://127.0.0.1:9"}, check=1)
    assert "cannot reach" in r.stderr
    r = run(gw, "whoami", key="tg-wrong", check=3)
    assert "check the key" in r.stderr
    run(gw, "get", check=2)
