"""The OpenAI Responses API through `tollgate up`, with the official `openai` package changing
only base URL and key: create (plain, streamed, structured), the function-calling loop,
`previous_response_id` conversations, the stored side (retrieve, input items, delete) and
the errors a governed request can meet."""

import json
import time

import httpx
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel


@pytest.fixture()
def client(tollgate, dev_key):
    return OpenAI(base_url=tollgate.url + "/v1", api_key=dev_key, max_retries=0)


TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
CALLS = json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}}])


@pytest.mark.parametrize("model", ["mock-1", "claude-mock", "remote-mock"])
def test_create_plain(client, model):
    r = client.responses.create(model=model, input="hello there", instructions="be brief")
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert r.output_text == "Mock reply to: hello there"
    assert r.model == model and r.instructions == "be brief"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    [message] = r.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")


def test_create_with_message_items(client):
    r = client.responses.create(model="mock-1", input=[
        {"role": "developer", "content": "you are terse"},
        {"role": "user", "content": [{"type": "input_text", "text": "first part"}]},
        {"role": "assistant", "content": "an earlier answer"},
        {"type": "message", "role": "user", "content": "the last question"},
    ])
    assert r.output_text == "Mock reply to: the last question"


@pytest.mark.parametrize("model", ["mock-1", "claude-mock"])
def test_stream_events(client, model):
    events = list(client.responses.create(model=model, input="stream me please", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[1] == "response.in_progress"
    assert kinds[-1] == "response.completed"
    for needed in ("response.output_item.added", "response.content_part.added", "response.output_text.done",
                   "response.content_part.done", "response.output_item.done"):
        assert needed in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Mock reply to: stream me please"
    final = events[-1].response
    assert final.output_text == text and final.status == "completed"
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0
    assert events[0].response.id == final.id


def test_stream_helper_and_retrieve(client):
    with client.responses.stream(model="mock-1", input="helper stream") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == "Mock reply to: helper stream"
    again = client.responses.retrieve(final.id)
    assert again.output_text == final.output_text and again.usage.output_tokens == final.usage.output_tokens


@pytest.mark.parametrize("model", ["mock-1", "claude-mock"])
def test_function_calling_loop(client, model):
    r = client.responses.create(model=model, input="weather in Paris?", tools=TOOLS,
                                extra_headers={"x-mock-tool-calls": CALLS})
    [call] = [o for o in r.output if o.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert call.call_id
    # Manual history, as agent loops without server state do it.
    follow = client.responses.create(
        model=model, tools=TOOLS, extra_headers={"x-mock-reply": "It is sunny."}, store=False,
        input=[{"role": "user", "content": "weather in Paris?"}, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert follow.output_text == "It is sunny."
    # Server state: only the new item, chained on the stored response.
    chained = client.responses.create(
        model=model, tools=TOOLS, previous_response_id=r.id, extra_headers={"x-mock-reply": "Still sunny."},
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert chained.output_text == "Still sunny." and chained.previous_response_id == r.id


def test_streamed_function_call(client):
    events = list(client.responses.create(model="mock-1", input="weather?", tools=TOOLS, stream=True,
                                          extra_headers={"x-mock-tool-calls": CALLS}))
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == {"city": "Paris"}
    [done] = [e for e in events if e.type == "response.output_item.done" and e.item.type == "function_call"]
    assert done.item.name == "get_weather" and json.loads(done.item.arguments) == {"city": "Paris"}


def test_previous_response_id_carries_the_conversation(client):
    first = client.responses.create(model="mock-1", input="my name is Ada")
    alone = client.responses.create(model="mock-1", input="what is my name?", store=False)
    second = client.responses.create(model="mock-1", input="what is my name?", previous_response_id=first.id)
    # The history was sent upstream: the same question costs more input tokens with it.
    assert second.usage.input_tokens > alone.usage.input_tokens
    items = client.responses.input_items.list(second.id, order="asc")
    texts = [i.content[0].text for i in items.data if i.type == "message"]
    assert texts == ["my name is Ada", "Mock reply to: my name is Ada", "what is my name?"]
    newest_first = client.responses.input_items.list(second.id, limit=1)
    assert newest_first.data[0].content[0].text == "what is my name?" and newest_first.has_more


def test_store_false_is_not_kept(client):
    r = client.responses.create(model="mock-1", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="mock-1", input="x", previous_response_id=r.id)
    assert e.value.body["param"] == "previous_response_id"


def test_delete_and_other_principals(client, tollgate):
    r = client.responses.create(model="mock-1", input="private words")
    other = OpenAI(base_url=tollgate.url + "/v1", api_key=tollgate.create_key("mallory"), max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="mock-1", input="x", previous_response_id=r.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(r.id)
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)


class Weather(BaseModel):
    city: str
    temperature_c: float
    sunny: bool


def test_structured_output_parse(client):
    r = client.responses.parse(model="mock-1", input="weather as JSON", text_format=Weather)
    assert isinstance(r.output_parsed, Weather)


def test_errors_in_the_responses_format(client, tollgate):
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-nope", input="x")
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="mock-1", input=[{"type": "message", "role": "user", "content": 42}])
    assert e.value.body["param"].startswith("input")
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="mock-1", input="x", max_output_tokens=-1)
    assert e.value.body["param"] == "max_output_tokens"
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=tollgate.url + "/v1", api_key="tg-wrong", max_retries=0).responses.create(model="mock-1", input="x")
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="mock-1", input="x", extra_headers={"x-mock-fault": "429:1"})
    limited = OpenAI(base_url=tollgate.url + "/v1", api_key=tollgate.create_key("carol", models=["mock-1"]), max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        limited.responses.create(model="claude-mock", input="x")


def test_malformed_bodies_are_4xx(tollgate, dev_key):
    h = {"authorization": f"Bearer {dev_key}", "content-type": "application/json"}
    for body in [b"{", b"[]", b'{"model":"mock-1"}', b'{"model":"mock-1","input":{"a":1}}',
                 b'{"model":"mock-1","input":"x","store":"yes"}', b'{"model":"mock-1","input":"x","tools":[{"type":"nope"}]}',
                 b'{"model":"mock-1","input":"x","previous_response_id":7}']:
        r = httpx.post(tollgate.url + "/v1/responses", content=body, headers=h)
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
        assert r.json()["error"]["message"], body
    r = httpx.get(tollgate.url + "/v1/responses/resp_missing", headers=h)
    assert r.status_code == 404 and r.json()["error"]["type"]
    r = httpx.put(tollgate.url + "/v1/responses", headers=h)
    assert r.status_code == 405


def test_usage_is_recorded(client, tollgate):
    r = client.responses.create(model="mock-1", input="count me", metadata={"k": "v"})
    assert r.metadata == {"k": "v"}
    deadline = time.monotonic() + 5
    while True:
        rows = tollgate.admin("GET", "/api/v1/usage/requests?limit=50").json()["items"]
        if any(row["principalName"] == "alice" and row["status"] == 200 and row["model"] == "mock-1"
               and row["inputTokens"] == r.usage.input_tokens and row["outputTokens"] == r.usage.output_tokens
               for row in rows):
            break
        assert time.monotonic() < deadline, rows[:3]
        time.sleep(0.05)


def test_retention_prunes_old_stored_responses(client, tollgate):
    import sqlite3
    old = client.responses.create(model="mock-1", input="an old answer")
    fresh = client.responses.create(model="mock-1", input="a fresh answer")
    with sqlite3.connect(tollgate.workdir / "t.db") as db:
        db.execute("UPDATE responses SET created_at_ms = 0 WHERE id = ?", (old.id,))
    r = tollgate.admin("POST", "/api/v1/scheduler/jobs/ledger-retention/run")
    assert r.status_code == 200, r.text
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(old.id)
    assert client.responses.retrieve(fresh.id).output_text == "Mock reply to: a fresh answer"
