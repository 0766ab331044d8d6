"""Every admin API answer matches the schema `operator/openapi.json` gives for it (the
document the dashboard's typed client is generated from), checked with jsonschema against a
running `tollgate up` with traffic, resources, users, teams and findings in place."""

import copy
import json
import time
from pathlib import Path

import httpx
import jsonschema
import pytest

from conftest import start_tollgate

ROOT = Path(__file__).resolve().parents[2]
DOC = json.loads((ROOT / "operator" / "openapi.json").read_text())

RESOURCES = """
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models:
    - {name: mock-1, prices: {inputPerMtok: "1", outputPerMtok: "2"}}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: team-a}
spec:
  subject: {kind: team, name: team-a}
  limit: "10"
  period: monthly
  alertThresholds: [50, 90]
  owners: [{kind: developer, name: sam}]
"""


def json_schema(node):
    """OpenAPI 3.0 → JSON Schema: `nullable: true` becomes a union with null."""
    if isinstance(node, list):
        return [json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        if "type" in out and isinstance(out["type"], str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


COMPONENTS = json_schema(copy.deepcopy(DOC["components"]))


def check(method: str, template: str, response: httpx.Response):
    op = DOC["paths"][template][method.lower()]
    expected = op["responses"].get(str(response.status_code))
    assert expected, f"{method} {template} answered {response.status_code}, not in the document: {response.text}"
    schema = json_schema(expected["content"]["application/json"]["schema"])
    if schema is True:  # any JSON (the OpenAPI document itself)
        schema = {}
    jsonschema.validate(response.json(), {**schema, "components": COMPONENTS})


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    t = start_tollgate(tmp_path_factory.mktemp("openapi"), RESOURCES)
    yield t
    t.proc.stop()


def test_every_answer_matches_its_schema(gw):
    seen = set()

    def call(method, template, path=None, who=None, **kw):
        key = who or gw.admin_key
        r = httpx.request(method, gw.url + (path or template), headers={"authorization": f"Bearer {key}"},
                          timeout=10, **kw)
        check(method, template, r)
        seen.add((method, template))
        return r

    policy = {"apiVersion": "tollgate.dev/v1alpha1", "kind": "SafetyPolicy", "metadata": {"name": "pii"},
              "spec": {"input": {"detectors": [{"id": "pii.email", "action": "block"}]}}}
    assert call("POST", "/api/v1/resources/{kind}", "/api/v1/resources/safetypolicies", json=policy).status_code == 201
    token = {"apiVersion": "tollgate.dev/v1alpha1", "kind": "IPToken", "metadata": {"name": "extra"},
             "spec": {"provider": "openai", "secretRef": {"name": "extra", "key": "api-key"},
                      "models": [{"name": "gpt-x"}]}}
    call("PUT", "/api/v1/resources/{kind}/{namespace}/{name}", "/api/v1/resources/iptokens/default/extra", json=token)
    call("PUT", "/api/v1/resources/{kind}/{namespace}/{name}/key", "/api/v1/resources/iptokens/default/extra/key",
         json={"value": "sk-canary-schema"})
    call("POST", "/api/v1/teams", json={"name": "team-a"})
    call("POST", "/api/v1/users", json={"name": "dana", "role": "developer", "teams": ["team-a"]})
    call("PUT", "/api/v1/teams/{name}/members/{user}", "/api/v1/teams/team-a/members/sam")
    issued = call("POST", "/api/v1/keys", json={"principal": {"kind": "developer", "name": "dana", "team": "team-a"}}).json()
    dev = issued["key"]
    rotated = call("POST", "/api/v1/keys/{id}/rotate", f"/api/v1/keys/{issued['record']['id']}/rotate").json()
    dev = rotated["key"]
    body = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
    for content in ["hello", "mail me at jo@example.com"]:
        body["messages"][0]["content"] = content
        httpx.post(gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {dev}"}, timeout=10)
    call("PUT", "/api/v1/me/preferences", who=dev, json={"model": "mock-1", "provider": "mock"})
    call("POST", "/api/v1/safety/check", json={"policy": "pii", "text": "jo@example.com"})
    time.sleep(0.5)
    call("POST", "/api/v1/scheduler/jobs/{name}/run", "/api/v1/scheduler/jobs/usage-rollups/run")

    for template, op in DOC["paths"].items():
        if "get" in op and "{" not in template and template != "/api/v1/openapi.json":
            call("GET", template)
    for who in [dev, gw.admin_key]:
        call("GET", "/api/v1/me", who=who)
        call("GET", "/api/v1/usage", "/api/v1/usage?by=day", who=who)
        call("GET", "/api/v1/usage/requests", "/api/v1/usage/requests?limit=1", who=who)
    for kind in ["iptokens", "budgets", "safetypolicies", "agents", "sandboxes", "dataplanes"]:
        call("GET", "/api/v1/resources/{kind}", f"/api/v1/resources/{kind}")
    call("GET", "/api/v1/resources/{kind}/{namespace}/{name}", "/api/v1/resources/iptokens/default/extra")
    call("GET", "/api/v1/budgets/{name}", "/api/v1/budgets/team-a")
    call("GET", "/api/v1/budgets/{namespace}/{name}", "/api/v1/budgets/default/team-a")
    violations = call("GET", "/api/v1/safety/violations").json()
    assert violations["total"] >= 1
    # Errors have their schema too.
    call("GET", "/api/v1/budgets/{name}", "/api/v1/budgets/nope")
    call("POST", "/api/v1/keys", json={"principal": {"kind": "robot", "name": "x"}})
    # limit is 1-500, as the schema says.
    for bad in ["0", "501"]:
        for template in ["/api/v1/keys", "/api/v1/resources", "/api/v1/audit", "/api/v1/usage/requests"]:
            r = call("GET", template, f"{template}?limit={bad}")
            assert r.status_code == 400 and r.json()["error"]["param"] == "limit", r.text
    # Bodies are objects.
    r = call("PUT", "/api/v1/me/preferences", who=dev, json=["mock-1"])
    assert r.status_code == 400, r.text
    # A policy that does not apply to the caller is a documented 404, like a missing one.
    other_team = {"apiVersion": "tollgate.dev/v1alpha1", "kind": "SafetyPolicy", "metadata": {"name": "team-b-only"},
                  "spec": {"selector": {"subjects": [{"kind": "team", "name": "team-b"}]},
                           "input": {"custom": {"terms": [{"id": "codename", "terms": ["secret-project"],
                                                                   "action": "block"}]}}}}
    assert call("POST", "/api/v1/resources/{kind}", "/api/v1/resources/safetypolicies",
                json=other_team).status_code == 201
    for name in ["team-b-only", "no-such-policy"]:
        r = call("POST", "/api/v1/safety/check", who=dev, json={"policy": name, "text": "secret-project"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "policy_not_found", r.text
    assert call("POST", "/api/v1/safety/check", json={"policy": "team-b-only", "text": "x"}).status_code == 200
    call("DELETE", "/api/v1/resources/{kind}/{namespace}/{name}", "/api/v1/resources/safetypolicies/default/team-b-only")
    # Resource documents too deep or too big for the parser: refused at once, documented.
    yaml = {"authorization": f"Bearer {gw.admin_key}", "content-type": "application/yaml"}
    started = time.monotonic()
    r = httpx.post(gw.url + "/api/v1/resources/budgets", headers=yaml, content="[" * 200_000, timeout=10)
    check("POST", "/api/v1/resources/{kind}", r)
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_deep", r.text
    assert time.monotonic() - started < 5
    r = httpx.post(gw.url + "/api/v1/resources/budgets", headers=yaml, content="[" * 300_000, timeout=10)
    check("POST", "/api/v1/resources/{kind}", r)
    assert r.status_code == 413, r.text
    # A method a path does not serve: 405 with the error format and Allow.
    r = httpx.request("PATCH", gw.url + "/api/v1/keys", headers={"authorization": f"Bearer {gw.admin_key}"},
                      timeout=10)
    assert r.status_code == 405 and "GET" in r.headers["allow"], r.text
    jsonschema.validate(r.json(), {"$ref": "#/components/schemas/Error", "components": COMPONENTS})
    call("DELETE", "/api/v1/resources/{kind}/{namespace}/{name}", "/api/v1/resources/safetypolicies/default/pii")
    call("DELETE", "/api/v1/teams/{name}/members/{user}", "/api/v1/teams/team-a/members/sam")
    call("DELETE", "/api/v1/keys/{id}", f"/api/v1/keys/{rotated['record']['id']}")
    call("DELETE", "/api/v1/users/{name}", "/api/v1/users/dana")
    call("DELETE", "/api/v1/teams/{name}", "/api/v1/teams/team-a")

    assert call("GET", "/api/v1/openapi.json").json() == DOC, "the served document is the committed one"

    every = {(m.upper(), p) for p, ops in DOC["paths"].items() for m in ops}
    assert every - seen == set(), f"endpoints never checked: {sorted(every - seen)}"
