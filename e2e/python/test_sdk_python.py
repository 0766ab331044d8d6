"""The Python SDK (sdk/python, package `tollgate`) against the built `tollgate up`, with the
real openai, anthropic, langchain-openai and langchain-core packages: patched clients use
the gateway and the agent's key, a LangChain tool-calling loop runs end to end with
guard_tools, a denied tool never runs, a budget reached mid-run raises BudgetExceeded, and
the usage lands in the ledger under the agent. Also runs the SDK README's examples and the
Rust SDK's examples as written."""

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import grpc
import openai
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

import tollgate
from conftest import bin_dir, start_tollgate
from tollgate.langchain import guard_tools

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "python"

# mock-costly: $1 per output token, so max_tokens 2 costs exactly $2; mock-1 is nearly free.
RESOURCES = (SDK / "examples" / "resources.yaml").read_text() + """
---
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: costly}
spec:
  provider: mock
  forwardHeaders: ["x-mock-"]
  models:
    - name: mock-costly
      prices: {inputPerMtok: "0", outputPerMtok: "1000000"}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: spender}
spec:
  subject: {kind: agent, name: spender}
  limit: "5"
  period: daily
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    t = start_tollgate(tmp_path_factory.mktemp("sdk"), RESOURCES)
    yield t
    t.proc.stop()


@pytest.fixture()
def agent(gateway, monkeypatch):
    """Configures the SDK for a fresh agent key and patches the clients; undone afterwards."""

    def make(name="research-agent"):
        key = gateway.create_key(name, kind="agent")
        # A real provider key in the environment must never reach the gateway or be used.
        monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-real-provider-key")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-real-provider-key")
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        tollgate.configure(base_url=gateway.url, api_key=key)
        tollgate.patch()
        return key

    yield make
    tollgate.unpatch()
    assert os.environ["OPENAI_API_KEY"] == "sk-proj-real-provider-key", "unpatch restores the environment"


def ledger(gateway, principal, expect: int):
    """The principal's ledger rows, once `expect` of them are there: `tollgate up` answers
    after its local journal holds a record and writes the database just after, so poll."""
    deadline = time.monotonic() + 10
    while True:
        db = sqlite3.connect(gateway.workdir / "t.db")
        try:
            rows = db.execute(
                "SELECT endpoint, model, status, error_class, cost_micros FROM usage_records "
                "WHERE principal_name = ? ORDER BY ts_ms, id", (principal,)).fetchall()
        finally:
            db.close()
        if len(rows) >= expect or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_patched_openai_and_anthropic_clients_use_the_gateway_and_the_agents_key(gateway, agent):
    agent("patched-agent")
    client = openai.OpenAI()  # no base URL, the provider key from the environment
    assert str(client.base_url).rstrip("/") == gateway.url + "/v1"
    assert client.api_key.startswith("tg-")
    reply = client.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Mock reply to: hi"

    msg = anthropic.Anthropic().messages.create(
        model="mock-1", max_tokens=50, messages=[{"role": "user", "content": "hello"}])
    assert msg.content[0].text == "Mock reply to: hello"

    # A client aimed elsewhere on purpose is not rerouted (and gets no provider key from the
    # environment either: patch() points OPENAI_API_KEY at the agent's key).
    other = openai.OpenAI(base_url="http://127.0.0.1:9/v1")
    assert str(other.base_url).startswith("http://127.0.0.1:9/")
    assert os.environ["OPENAI_API_KEY"].startswith("tg-")

    rows = ledger(gateway, "patched-agent", 2)
    assert [(r[0], r[2]) for r in rows] == [("chat.completions", 200), ("messages", 200)], rows


def test_gateway_refusals_raise_sdk_exceptions_that_are_also_the_clients_own(gateway, agent):
    agent("refused-agent")
    client = openai.OpenAI(max_retries=0)
    with pytest.raises(tollgate.PolicyViolation) as e:
        client.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "hi"}],
                                       tools=[{"type": "function", "function": {"name": "shell_exec", "parameters": {}}}])
    assert (e.value.policy, e.value.rule) == ("default/agents", "tools.deny")
    assert isinstance(e.value, openai.BadRequestError), "existing except clauses keep working"

    with pytest.raises(tollgate.NotFound):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])

    tollgate.configure(base_url=gateway.url, api_key="tg-not-a-key")
    with pytest.raises(tollgate.AuthenticationError):
        openai.OpenAI().models.list()
    with pytest.raises(tollgate.AuthenticationError):
        tollgate.budgets()


def test_runtime_service_tool_text_and_budget(gateway, agent):
    agent("research-agent")
    v = tollgate.check_tool("search_docs", {"q": "budgets"}, run_id="run-1")
    assert v.allowed and v.decision == "allow" and v.raise_for_denial() == {"q": "budgets"}

    v = tollgate.check_tool("files_delete", {"path": "/x"})
    assert (v.decision, v.policy, v.rule) == ("deny", "default/agents", "tools.deny")
    with pytest.raises(tollgate.ToolDenied) as e:
        v.raise_for_denial()
    assert e.value.tool == "files_delete"

    v = tollgate.check_tool("http_get", {"url": "http://169.254.169.254/latest/meta-data/"})
    assert (v.decision, v.rule) == ("deny", "tools.arguments.no-metadata")
    assert "169.254" not in v.reason and "arguments.url" in v.reason

    v = tollgate.check_tool("send_mail", {"to": "bob@example.com", "body": "hi"})
    assert (v.decision, v.arguments) == ("allow_redacted", {"to": "[REDACTED:EMAIL]", "body": "hi"})

    t = tollgate.validate_text("mail bob@example.com", "output")
    assert (t.decision, t.text) == ("allow_redacted", "mail [REDACTED:EMAIL]")
    assert tollgate.validate_text("mail bob@example.com", "input").decision == "allow"
    with pytest.raises(ValueError):
        tollgate.validate_text("x", "sideways")

    [b] = tollgate.budgets()
    assert (b.name, b.limit_micros, b.hard, b.subject_kind) == ("default/research-agent", 5_000_000, True, "agent")
    assert b.resets_at is not None and b.resets_at.tzinfo is not None
    with pytest.raises(tollgate.NotFound):
        tollgate.budget("spender")


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    CALLS.append(("get_weather", city))
    return f"Sunny in {city}"


@tool
def files_delete(path: str) -> str:
    """Deletes a file."""
    CALLS.append(("files_delete", path))
    return "deleted"


@tool
def get_time() -> str:
    """The current time."""
    CALLS.append(("get_time",))
    return "12:00"


CALLS: list = []


def run_loop(llm, tools, question):
    by_name = {t.name: t for t in tools}
    messages = [HumanMessage(question)]
    for _ in range(10):
        reply = llm.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return messages
        for call in reply.tool_calls:
            messages.append(by_name[call["name"]].invoke(call))
    raise AssertionError("the agent loop did not finish")


def test_langchain_tool_calling_agent_loop_end_to_end(gateway, agent):
    agent("research-agent")
    CALLS.clear()
    tools = guard_tools([get_weather])
    script = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    llm = ChatOpenAI(model="mock-1", default_headers={
        "x-mock-tool-calls": json.dumps(script), "x-mock-tool-rounds": "1"}).bind_tools(tools)
    messages = run_loop(llm, tools, "Weather in Paris?")
    assert CALLS == [("get_weather", "Paris")]
    assert isinstance(messages[2], ToolMessage) and messages[2].content == "Sunny in Paris"
    assert messages[-1].content == "Mock reply to: Weather in Paris?"
    rows = ledger(gateway, "research-agent", 2)
    assert [r[2] for r in rows].count(200) >= 2, rows


def test_guard_tools_blocks_a_denied_tool(gateway, agent):
    agent("research-agent")
    CALLS.clear()
    [raising] = guard_tools([files_delete])
    call = {"name": "files_delete", "args": {"path": "/data/x.csv"}, "id": "call_1", "type": "tool_call"}
    with pytest.raises(tollgate.ToolDenied) as e:
        raising.invoke(call)
    assert (e.value.policy, e.value.rule) == ("default/agents", "tools.deny")
    [returning] = guard_tools([files_delete], on_deny="return")
    result = returning.invoke(call)
    assert isinstance(result, ToolMessage) and "refused by Tollgate" in result.content
    assert CALLS == [], "a denied tool never runs"
    with pytest.raises(ValueError):
        guard_tools([files_delete], on_deny="ignore")


def test_a_budget_reached_mid_run_raises_budget_exceeded(gateway, agent):
    agent("spender")
    CALLS.clear()
    tools = guard_tools([get_time])
    # Each LLM call reserves its worst case, max_tokens 2 = $2, and is charged what it used:
    # a call with `{}` arguments is 1 token = $1. With $5: four rounds, then $4 spent and the
    # fifth call's $2 reservation does not fit.
    script = [{"name": "get_time", "arguments": {}}]
    llm = ChatOpenAI(model="mock-costly", max_tokens=2, default_headers={
        "x-mock-tool-calls": json.dumps(script), "x-mock-tool-rounds": "10"}).bind_tools(tools)
    with pytest.raises(Exception) as e:
        run_loop(llm, tools, "What time is it, again and again?")
    err = tollgate.from_openai_error(e.value)
    assert isinstance(err, tollgate.BudgetExceeded), repr(e.value)
    assert (err.budget, err.remaining_micros) == ("default/spender", 1_000_000)
    assert err.resets_at == tollgate.budget("spender").resets_at
    assert isinstance(err, openai.RateLimitError), "also the client's own exception"
    assert CALLS == [("get_time",)] * 4
    rows = ledger(gateway, "spender", 5)
    assert [r[2] for r in rows] == [200, 200, 200, 200, 429], f"refused once, not retried: {rows}"
    assert [r[4] for r in rows] == [1_000_000] * 4 + [0]
    assert tollgate.budget("spender").spent_micros == 4_000_000


def test_rust_sdk_examples_run_against_tollgate_up(gateway):
    key = gateway.create_key("research-agent", kind="agent")
    env = {**os.environ, "TOLLGATE_BASE_URL": gateway.url, "TOLLGATE_API_KEY": key, "OPENAI_API_KEY": "sk-x"}
    examples = bin_dir() / "examples"
    out = subprocess.run([str(examples / "chat")], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "reply: Mock reply to: Say hello in one sentence." in out.stdout
    assert "budget default/research-agent" in out.stdout
    out = subprocess.run([str(examples / "tool_check"), "shell_exec", '{"cmd": "ls"}'], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "denied by default/agents (tools.deny)" in out.stdout
    out = subprocess.run([str(examples / "middleware")], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Mock reply to: Hello through the middleware"


def readme_blocks():
    text = (SDK / "README.md").read_text()
    return re.findall(r"<!-- example: (\S+) -->\n```python\n(.*?)```", text, re.S)


def test_readme_shows_the_examples_as_they_are():
    blocks = readme_blocks()
    assert {name for name, _ in blocks} == {"langchain_agent.py", "crewai_tools.py"}
    for name, code in blocks:
        assert code == (SDK / "examples" / name).read_text(), f"README block {name} differs from the file"


def test_readme_langchain_example_runs_as_written(gateway):
    key = gateway.create_key("research-agent", kind="agent")
    env = {**os.environ, "TOLLGATE_BASE_URL": gateway.url, "TOLLGATE_API_KEY": key}
    out = subprocess.run([sys.executable, str(SDK / "examples" / "langchain_agent.py")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ToolMessage: Sunny in Paris" in out.stdout
    assert "Tool call refused by Tollgate" in out.stdout and "no-metadata" in out.stdout
    assert "budget default/research-agent: spent" in out.stdout


def test_generated_python_stubs_are_current(tmp_path):
    """sdk/python/tollgate/v1/runtime_pb2.py(i) are generated from proto/ and committed.
    Regenerate: python -m grpc_tools.protoc -I proto --python_out=sdk/python --pyi_out=sdk/python proto/tollgate/v1/runtime.proto"""
    from grpc_tools import protoc

    rc = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
                      str(ROOT / "proto" / "tollgate" / "v1" / "runtime.proto")])
    assert rc == 0
    for name in ("runtime_pb2.py", "runtime_pb2.pyi"):
        fresh = (tmp_path / "tollgate" / "v1" / name).read_text()
        assert fresh == (SDK / "tollgate" / "v1" / name).read_text(), f"{name} is stale; see this test's docstring"
