"""Issue 17, item 7: one resource that cannot be served (an IP token whose key is not set,
an agent naming a budget that does not exist) never holds back the rest of the
configuration, and never stops `tollgate up` from starting again on the same database. The
broken resource is reported on itself (`status.conditions`); the working ones are enforced.
The Rust matrix over every kind is operator/tests/broken_resources.rs."""

import importlib.util
from pathlib import Path

import httpx

_spec = importlib.util.spec_from_file_location(
    "tollgate_e2e_common_broken", Path(__file__).resolve().parents[1] / "python" / "conftest.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)

FILES = """
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models: [{name: mock-1}]
"""


def doc(kind, name, spec):
    return {"apiVersion": "tollgate.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def condition(t, path, type_):
    r = t.admin("GET", "/api/v1/resources/" + path)
    assert r.status_code == 200, r.text
    for c in r.json()["document"]["status"]["conditions"]:
        if c["type"] == type_:
            return c
    raise AssertionError(f"{path} has no {type_} condition: {r.text}")


def chat(t, key, model):
    return httpx.post(
        t.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hello"}]},
        timeout=10,
    )


def enforced(t, carol, dave):
    """The working resources are in force: the mock serves, carol's hard budget refuses."""
    r = chat(t, dave, "mock-1")
    assert r.status_code == 200, r.text
    r = t.admin("GET", "/api/v1/budgets/default/carol")
    assert r.status_code == 200, r.text
    r = chat(t, carol, "mock-1")
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded", r.text
    assert condition(t, "budgets/default/carol", "Ready")["status"] == "True"


def broken_reported(t, dave):
    c = condition(t, "iptokens/default/keyless", "Accepted")
    assert (c["status"], c["reason"]) == ("False", "SecretNotFound"), c
    assert "TOLLGATE_SECRET_KEYLESS_API_KEY" in c["message"], c
    r = chat(t, dave, "gpt-keyless")
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "ip_token_unavailable" and "default/keyless" in error["message"], error
    c = condition(t, "agents/default/stray", "Accepted")
    assert (c["status"], c["reason"]) == ("False", "ReferenceNotFound"), c


def test_a_token_without_its_key_holds_nothing_back_and_survives_a_restart(tmp_path):
    t = common.start_tollgate(tmp_path, FILES)
    try:
        # The broken token first: everything created after it must still apply.
        keyless = doc("IPToken", "keyless", {"provider": "openai", "secretRef": {"name": "keyless", "key": "api-key"},
                                             "models": [{"name": "gpt-keyless"}]})
        r = t.admin("POST", "/api/v1/resources/iptokens", json=keyless)
        assert r.status_code == 201, r.text
        budget = doc("Budget", "carol", {"subject": {"kind": "developer", "name": "carol"}, "limit": "0.000001",
                                         "period": "monthly", "enforcement": "hard"})
        r = t.admin("POST", "/api/v1/resources/budgets", json=budget)
        assert r.status_code == 201, r.text
        stray = doc("Agent", "stray", {"image": "x:1", "budgetRef": {"name": "gone"}})
        r = t.admin("POST", "/api/v1/resources/agents", json=stray)
        assert r.status_code == 201, r.text
        carol, dave = t.create_key("carol"), t.create_key("dave")
        enforced(t, carol, dave)
        broken_reported(t, dave)
    finally:
        t.proc.stop()

    # The same database, the key still not set: it starts, serves and reports as before.
    t = common.start_tollgate(tmp_path, FILES, admin_key=t.admin_key)
    try:
        enforced(t, carol, dave)
        broken_reported(t, dave)
        # The key arrives: the token comes into service with nothing else changed.
        r = t.admin("PUT", "/api/v1/resources/iptokens/default/keyless/key", json={"value": "sk-late-key"})
        assert r.status_code == 200, r.text
        c = condition(t, "iptokens/default/keyless", "Ready")
        assert (c["status"], c["reason"]) == ("True", "Ready"), c
    finally:
        t.proc.stop()
