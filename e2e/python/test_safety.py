"""Safety policies through the real `openai` and `anthropic` clients: each action on each
stage, streaming and not; a secret split across stream chunks; audit mode; an invalid
policy rejected while traffic continues under the previous one; the check API and CLI."""

import json
import time

import anthropic
import httpx
import openai
import pytest
from openai import OpenAI

from conftest import start_tollgate

AWS = "AKIA" + "IOSFODNN7EXAMPLE"  # split so this file does not look like a leaked key
EMAIL = "jane.doe@example.com"

POLICIES = """
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models: [{name: mock-1}, {name: mock-embedding-1, kind: embedding}]
---
apiVersion: tollgate.dev/v1alpha1
kind: SafetyPolicy
metadata: {name: strict}
spec:
  selector: {subjects: [{kind: developer, name: alice}]}
  input:
    detectors:
      - {id: "secrets.*", action: block}
      - {id: pii.email, action: redact}
      - {id: pii.ip_address, action: log}
    custom:
      terms: [{id: codename, terms: [project nightingale], action: block}]
  output:
    detectors:
      - {id: "secrets.*", action: block}
      - {id: pii.email, action: redact}
      - {id: pii.ip_address, action: log}
  tools:
    deny: [delete_*]
---
apiVersion: tollgate.dev/v1alpha1
kind: SafetyPolicy
metadata: {name: watch}
spec:
  selector: {subjects: [{kind: developer, name: bob}]}
  mode: audit
  input:
    detectors: [{id: "secrets.*", action: block}]
  output:
    detectors: [{id: "secrets.*", action: block}]
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    t = start_tollgate(tmp_path_factory.mktemp("safety"), POLICIES, args=["--reload-seconds", "1"])
    t.alice = t.create_key("alice")
    t.bob = t.create_key("bob")
    yield t
    t.proc.stop()


def client(gw, key):
    return OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def user(text):
    return [{"role": "user", "content": text}]


def test_input_block_names_policy_rule_and_location_not_the_secret(gw):
    with pytest.raises(openai.BadRequestError) as e:
        client(gw, gw.alice).chat.completions.create(model="mock-1", messages=user(f"my key is {AWS}"))
    err = e.value.body
    assert err["code"] == "policy_violation"
    assert "default/strict" in err["message"] and "secrets.aws_access_key" in err["message"]
    assert "messages[0]" in err["message"] or err["param"].startswith("messages[0]")
    assert AWS not in json.dumps(err)
    with pytest.raises(openai.BadRequestError):
        client(gw, gw.alice).chat.completions.create(model="mock-1", messages=user("about Project Nightingale"))
    with pytest.raises(openai.BadRequestError):
        client(gw, gw.alice).embeddings.create(model="mock-embedding-1", input=[f"key {AWS}"])


def test_input_redact_rewrites_before_the_provider_sees_it(gw):
    r = client(gw, gw.alice).chat.completions.create(model="mock-1", messages=user(f"mail {EMAIL} now"))
    # The mock echoes what it received: the address never reached it.
    assert r.choices[0].message.content == "Mock reply to: mail [REDACTED:EMAIL] now"


def test_input_log_lets_it_through(gw):
    r = client(gw, gw.alice).chat.completions.create(model="mock-1", messages=user("host 10.1.2.3 is down"))
    assert r.choices[0].message.content == "Mock reply to: host 10.1.2.3 is down"
    assert "10.1.2.3" not in "\n".join(gw.proc.stderr), "findings are logged without the matched text"


def test_tool_result_injection_of_a_secret_is_caught(gw):
    messages = [
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": f"found {AWS}"},
    ]
    with pytest.raises(openai.BadRequestError) as e:
        client(gw, gw.alice).chat.completions.create(model="mock-1", messages=messages)
    assert "messages[2]" in e.value.body["message"] or "messages[2]" in (e.value.body["param"] or "")


@pytest.mark.parametrize("stream", [False, True])
def test_output_redact(gw, stream):
    kw = dict(model="mock-1", messages=user("contact?"), extra_headers={"x-mock-reply": f"write to {EMAIL} today"})
    c = client(gw, gw.alice)
    if stream:
        text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(stream=True, **kw) if ch.choices)
    else:
        text = c.chat.completions.create(**kw).choices[0].message.content
    assert text == "write to [REDACTED:EMAIL] today"


@pytest.mark.parametrize("stream", [False, True])
def test_output_block(gw, stream):
    kw = dict(model="mock-1", messages=user("key?"), extra_headers={"x-mock-reply": f"here: {AWS} enjoy"})
    c = client(gw, gw.alice)
    with pytest.raises(openai.APIError) as e:
        if stream:
            for _ in c.chat.completions.create(stream=True, **kw):
                pass
        else:
            c.chat.completions.create(**kw)
    assert "policy" in str(e.value) and AWS not in str(e.value)


def test_output_log(gw):
    r = client(gw, gw.alice).chat.completions.create(model="mock-1", messages=user("ip?"),
                                                     extra_headers={"x-mock-reply": "it is 192.168.7.7"})
    assert r.choices[0].message.content == "it is 192.168.7.7"


def test_a_secret_split_across_stream_chunks_is_caught(gw):
    reply = f"the key is {AWS} ok"
    with pytest.raises(openai.APIError):
        for ch in client(gw, gw.alice).chat.completions.create(
                model="mock-1", messages=user("key?"), stream=True,
                extra_headers={"x-mock-reply": reply, "x-mock-chunks": "9"}):
            for c in ch.choices:
                assert "AKIA" not in (c.delta.content or ""), "secret text reached the client"


def test_output_rules_on_the_anthropic_endpoint(gw):
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.alice, max_retries=0)
    m = a.messages.create(model="mock-1", max_tokens=50, messages=user("mail?"),
                          extra_headers={"x-mock-reply": f"mail {EMAIL}"})
    assert m.content[0].text == "mail [REDACTED:EMAIL]"
    with a.messages.stream(model="mock-1", max_tokens=50, messages=user("mail?"),
                           extra_headers={"x-mock-reply": f"mail {EMAIL}", "x-mock-chunks": "7"}) as s:
        assert "".join(s.text_stream) == "mail [REDACTED:EMAIL]"


def test_denied_tool_definitions_are_blocked(gw):
    tools = [{"type": "function", "function": {"name": "delete_everything", "parameters": {"type": "object"}}}]
    with pytest.raises(openai.BadRequestError) as e:
        client(gw, gw.alice).chat.completions.create(model="mock-1", messages=user("clean up"), tools=tools)
    assert "tools.deny" in e.value.body["message"]


def test_audit_mode_changes_nothing_but_records(gw):
    r = client(gw, gw.bob).chat.completions.create(model="mock-1", messages=user(f"key {AWS}"),
                                                   extra_headers={"x-mock-reply": f"echo {AWS}"})
    assert r.choices[0].message.content == f"echo {AWS}"
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'action="audit"' in metrics and "secrets.aws_access_key" in metrics
    assert AWS not in metrics


def test_invalid_policy_is_rejected_and_the_previous_one_stays(gw):
    path = gw.workdir / "resources" / "resources.yaml"
    good = path.read_text()
    path.write_text(good + """
---
apiVersion: tollgate.dev/v1alpha1
kind: SafetyPolicy
metadata: {name: broken}
spec:
  input:
    custom:
      regex: [{id: bad, pattern: "([a-z", action: block}]
""")
    try:
        deadline = time.monotonic() + 10
        while not any("spec.input.custom.regex[0].pattern" in line for line in gw.proc.stderr):
            assert time.monotonic() < deadline, "the bad policy was not reported"
            time.sleep(0.05)
        with pytest.raises(openai.BadRequestError):
            client(gw, gw.alice).chat.completions.create(model="mock-1", messages=user(f"key {AWS}"))
        r = client(gw, gw.alice).chat.completions.create(model="mock-1", messages=user("hello"))
        assert r.choices[0].message.content == "Mock reply to: hello"
    finally:
        path.write_text(good)


def test_check_api_and_cli(gw):
    r = gw.admin("POST", "/api/v1/safety/check", json={"policy": "strict", "text": f"mail {EMAIL} key {AWS}"})
    v = r.json()
    assert r.status_code == 200 and v["outcome"] == "block"
    assert {f["rule"] for f in v["findings"]} >= {"secrets.aws_access_key", "pii.email"}
    assert AWS not in r.text and EMAIL not in r.text
    out = gw.cli("policy", "test", "--policy", "strict", f"write {EMAIL}")
    assert out.stdout.startswith("redact") and "[REDACTED:EMAIL]" in out.stdout
    blocked = gw.cli("policy", "test", "--policy", "strict", f"key {AWS}", check=False)
    assert blocked.returncode == 3 and blocked.stdout.startswith("block")
    assert gw.admin("POST", "/api/v1/safety/check", json={"policy": "nope", "text": "x"}).status_code == 404


def test_responses_api_is_governed_like_chat(gw):
    c = client(gw, gw.alice)
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="mock-1", input=f"my key is {AWS}")
    assert e.value.body["code"] == "policy_violation" and AWS not in json.dumps(e.value.body)
    r = c.responses.create(model="mock-1", input=f"mail {EMAIL} now")
    assert r.output_text == "Mock reply to: mail [REDACTED:EMAIL] now"
    # What is stored (and listed, and sent again with previous_response_id) is what the
    # provider saw, not the address.
    items = c.responses.input_items.list(r.id)
    assert EMAIL not in items.model_dump_json()
    assert EMAIL not in c.responses.retrieve(r.id).model_dump_json()
    out = c.responses.create(model="mock-1", input="contact?", extra_headers={"x-mock-reply": f"write to {EMAIL} today"})
    assert out.output_text == "write to [REDACTED:EMAIL] today"
    streamed = list(c.responses.create(model="mock-1", input="contact?", stream=True,
                                       extra_headers={"x-mock-reply": f"write to {EMAIL} today"}))
    assert "".join(e.delta for e in streamed if e.type == "response.output_text.delta") == "write to [REDACTED:EMAIL] today"
    assert EMAIL not in json.dumps([e.model_dump() for e in streamed])


@pytest.mark.parametrize("stream", [False, True])
def test_responses_output_block(gw, stream):
    c = client(gw, gw.alice)
    kw = dict(model="mock-1", input="key?", extra_headers={"x-mock-reply": f"here: {AWS} enjoy"})
    if stream:
        events = list(c.responses.create(stream=True, **kw))
        assert events[-1].type == "response.failed"
        assert "policy" in events[-1].response.error.message
        assert AWS not in json.dumps([e.model_dump() for e in events])
    else:
        with pytest.raises(openai.APIError) as e:
            c.responses.create(**kw)
        assert "policy" in str(e.value) and AWS not in str(e.value)
