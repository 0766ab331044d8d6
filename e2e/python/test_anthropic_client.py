"""The official `anthropic` package against `/v1/messages`, changing only base URL and key."""

import anthropic
import pytest

TOOL = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
CALLS = '[{"name": "get_weather", "arguments": {"city": "Oslo"}}]'


@pytest.fixture()
def client(tollgate, dev_key):
    return anthropic.Anthropic(base_url=tollgate.url, api_key=dev_key, max_retries=0)


@pytest.mark.parametrize("model", ["claude-mock", "mock-1"])  # native, then translated to an OpenAI-wire upstream
def test_messages_non_streaming(client, model):
    m = client.messages.create(model=model, max_tokens=100, system="be nice", messages=[{"role": "user", "content": "hi claude"}])
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].type == "text" and m.content[0].text == "Mock reply to: hi claude"
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["claude-mock", "mock-1"])
def test_messages_streaming(client, model):
    with client.messages.stream(model=model, max_tokens=100, messages=[{"role": "user", "content": "stream it"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Mock reply to: stream it"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["claude-mock", "mock-1"])
@pytest.mark.parametrize("stream", [False, True])
def test_tool_use(client, model, stream):
    kwargs = dict(model=model, max_tokens=100, tools=[TOOL], messages=[{"role": "user", "content": "weather in Oslo"}],
                  extra_headers={"x-mock-tool-calls": CALLS})
    if stream:
        with client.messages.stream(**kwargs) as s:
            m = s.get_final_message()
    else:
        m = client.messages.create(**kwargs)
    assert m.stop_reason == "tool_use"
    use = [b for b in m.content if b.type == "tool_use"][0]
    assert use.name == "get_weather" and use.input == {"city": "Oslo"}
    follow = client.messages.create(
        model=model, max_tokens=100, tools=[TOOL], extra_headers={"x-mock-reply": "Cold."},
        messages=[{"role": "user", "content": "weather in Oslo"},
                  {"role": "assistant", "content": [b.model_dump() for b in m.content]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "-5C"}]}])
    assert follow.content[0].text == "Cold."


def test_errors(client, tollgate):
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=tollgate.url, api_key="tg-bad", max_retries=0).messages.create(
            model="claude-mock", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="claude-mock", max_tokens=5, messages=[{"role": "system", "content": "x"}])


def test_count_tokens(client, tollgate):
    short = client.messages.count_tokens(model="claude-mock", messages=[{"role": "user", "content": "hi"}])
    longer = client.messages.count_tokens(model="claude-mock", system="be nice", tools=[TOOL],
                                          messages=[{"role": "user", "content": "hi " * 200}])
    assert 0 < short.input_tokens < longer.input_tokens
    # On an Anthropic token the provider counts: the count is what the message then uses.
    asked = [{"role": "user", "content": "hi " * 200}]
    m = client.messages.create(model="claude-mock", max_tokens=10, messages=asked)
    raw = client.messages.with_raw_response.count_tokens(model="claude-mock", messages=asked)
    assert raw.parse().input_tokens == m.usage.input_tokens and "x-tollgate-token-count" not in raw.headers
    # When the provider cannot count, and on other providers, the gateway's estimate answers.
    failed = client.messages.with_raw_response.count_tokens(model="claude-mock", messages=asked,
                                                            extra_headers={"x-mock-fault": "500:1"})
    assert failed.headers["x-tollgate-token-count"] == "estimate" and failed.parse().input_tokens > 0
    other = client.messages.with_raw_response.count_tokens(model="mock-1", messages=asked)
    assert other.headers["x-tollgate-token-count"] == "estimate" and other.parse().input_tokens > 0
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="claude-nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.count_tokens(model="claude-mock", messages=[{"role": "system", "content": "x"}])
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "invalid_request_error"
    limited = anthropic.Anthropic(base_url=tollgate.url, api_key=tollgate.create_key("dora", models=["mock-1"]), max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError):
        limited.messages.count_tokens(model="claude-mock", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=tollgate.url, api_key="tg-wrong", max_retries=0).messages.count_tokens(
            model="claude-mock", messages=[{"role": "user", "content": "x"}])


def test_models_in_anthropic_shape(client, tollgate):
    ids = sorted(m.id for m in client.models.list())
    assert ids == ["claude-mock", "mock-1", "mock-embedding-1", "remote-mock"]
    one = client.models.retrieve("claude-mock")
    assert one.type == "model" and one.id == "claude-mock" and one.display_name
    with pytest.raises(anthropic.NotFoundError) as e:
        client.models.retrieve("claude-nope")
    assert e.value.body["type"] == "error"
    limited = anthropic.Anthropic(base_url=tollgate.url, api_key=tollgate.create_key("erin", models=["mock-1"]), max_retries=0)
    assert [m.id for m in limited.models.list()] == ["mock-1"]


def test_unknown_v1_paths_name_the_endpoints(tollgate, dev_key):
    import httpx
    for headers, shape in [({"authorization": f"Bearer {dev_key}"}, "openai"),
                           ({"x-api-key": dev_key, "anthropic-version": "2023-06-01"}, "anthropic")]:
        r = httpx.post(tollgate.url + "/v1/batches", headers=headers, json={})
        assert r.status_code == 404
        body = r.json()
        if shape == "anthropic":
            assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
        message = body["error"]["message"]
        assert "/v1/batches" in message and "/v1/responses" in message and "/v1/messages/count_tokens" in message
