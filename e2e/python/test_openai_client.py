"""The official `openai` package against `tollgate up`, changing only base URL and key."""

import json

import openai
import pytest
from openai import OpenAI


@pytest.fixture()
def client(tollgate, dev_key):
    return OpenAI(base_url=tollgate.url + "/v1", api_key=dev_key, max_retries=0)


def test_chat_non_streaming(client):
    r = client.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "hello there"}])
    assert r.choices[0].message.content == "Mock reply to: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model="mock-1",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock reply to: stream me please"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_chat_streaming_without_usage_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(
        model="mock-1", messages=[{"role": "user", "content": "x"}], stream=True))
    assert all(c.choices for c in chunks)
    assert all(getattr(c, "usage", None) is None for c in chunks)


def test_multipart_content_and_response_format(client):
    r = client.chat.completions.create(
        model="mock-1",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "part one"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        ],
        response_format={"type": "json_object"},
        max_tokens=50,
    )
    assert "part one" in r.choices[0].message.content


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
CALLS = json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}}])


@pytest.mark.parametrize("model", ["mock-1", "claude-mock", "remote-mock"])
def test_tool_calls_and_agent_loop(client, model):
    messages = [{"role": "user", "content": "weather in Paris?"}]
    r = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, extra_headers={"x-mock-tool-calls": CALLS})
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [r.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    r2 = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, extra_headers={"x-mock-reply": "It is sunny."})
    assert r2.choices[0].message.content == "It is sunny."


@pytest.mark.parametrize("model", ["mock-1", "claude-mock"])
def test_streamed_tool_calls(client, model):
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "weather?"}], tools=TOOLS,
                                            stream=True, extra_headers={"x-mock-tool-calls": CALLS})
    name, args, finish = "", "", None
    for c in stream:
        if not c.choices:
            continue
        for tc in c.choices[0].delta.tool_calls or []:
            assert tc.index == 0
            name += tc.function.name or ""
            args += tc.function.arguments or ""
        finish = c.choices[0].finish_reason or finish
    assert name == "get_weather" and json.loads(args) == {"city": "Paris"} and finish == "tool_calls"


def test_openai_client_served_by_anthropic_token(client):
    r = client.chat.completions.create(model="claude-mock", messages=[
        {"role": "system", "content": "sys"}, {"role": "user", "content": "translate me"}])
    assert r.choices[0].message.content == "Mock reply to: translate me"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0
    stream = client.chat.completions.create(model="claude-mock", messages=[{"role": "user", "content": "stream translated"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Mock reply to: stream translated"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_max_tokens_truncates_with_length(client):
    r = client.chat.completions.create(model="claude-mock", messages=[{"role": "user", "content": "a long question " * 10}], max_tokens=2)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 2


def test_embeddings(client):
    r = client.embeddings.create(model="mock-embedding-1", input=["alpha", "beta"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 16
    assert abs(sum(x * x for x in r.data[0].embedding) - 1.0) < 1e-3
    assert r.usage.prompt_tokens > 0
    f = client.embeddings.create(model="mock-embedding-1", input="alpha", encoding_format="float", dimensions=8)
    assert len(f.data[0].embedding) == 8


def test_models_list(client, tollgate):
    ids = sorted(m.id for m in client.models.list())
    assert ids == ["claude-mock", "mock-1", "mock-embedding-1", "remote-mock"]
    limited = OpenAI(base_url=tollgate.url + "/v1", api_key=tollgate.create_key("bob", models=["mock-1"]))
    assert [m.id for m in limited.models.list()] == ["mock-1"]


def test_errors_map_to_client_exceptions(client, tollgate):
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=tollgate.url + "/v1", api_key="tg-wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    limited = OpenAI(base_url=tollgate.url + "/v1", api_key=tollgate.create_key("carol", models=["mock-1"]), max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        limited.chat.completions.create(model="claude-mock", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="mock-1", messages=[])
    assert e.value.body["param"] == "messages"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "x"}], extra_headers={"x-mock-fault": "429:1"})
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="remote-mock", messages=[{"role": "user", "content": "x"}], extra_headers={"x-mock-fault": "status:500"})
    assert e.value.status_code == 502


def test_stream_broken_midway_gives_a_stream_error(client):
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="remote-mock", messages=[{"role": "user", "content": "a b c d e f g"}],
                                                stream=True, extra_headers={"x-mock-fault": "reset-mid"}):
            pass
