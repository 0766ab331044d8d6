"""The OpenAI Agents SDK's default `Agent(model=...)` (the Responses API) through `tollgate up`,
changing only base URL and key: a plain run, a function tool loop, and a streamed run."""

import asyncio
import json

import pytest
from agents import Agent, ModelSettings, OpenAIResponsesModel, RunConfig, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

set_tracing_disabled(True)


def model(tollgate, key, headers=None):
    client = AsyncOpenAI(base_url=tollgate.url + "/v1", api_key=key, max_retries=0, default_headers=headers or {})
    return OpenAIResponsesModel(model="mock-1", openai_client=client)


def test_plain_run(tollgate, dev_key):
    agent = Agent(name="helper", instructions="be brief", model=model(tollgate, dev_key))
    result = asyncio.run(Runner.run(agent, "hello agent"))
    assert result.final_output == "Mock reply to: hello agent"


def test_function_tool_loop(tollgate, dev_key):
    seen = []

    @function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        seen.append(city)
        return "sunny"

    # One round of tool calls, then the scripted answer.
    headers = {"x-mock-tool-calls": json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}}]),
               "x-mock-tool-rounds": "1", "x-mock-reply": "It is sunny in Paris."}
    agent = Agent(name="weather", instructions="use tools", tools=[get_weather], model=model(tollgate, dev_key, headers))
    result = asyncio.run(Runner.run(agent, "weather in Paris?"))
    assert seen == ["Paris"]
    assert result.final_output == "It is sunny in Paris."


def test_streamed_run(tollgate, dev_key):
    agent = Agent(name="streamer", model=model(tollgate, dev_key), model_settings=ModelSettings(max_tokens=200))

    async def go():
        run = Runner.run_streamed(agent, "stream this run")
        deltas = []
        async for event in run.stream_events():
            if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
                deltas.append(event.data.delta)
        return run.final_output, "".join(deltas)

    final, text = asyncio.run(go())
    assert final == text == "Mock reply to: stream this run"


@pytest.mark.parametrize("store", [True, False])
def test_server_side_conversation(tollgate, dev_key, store):
    agent = Agent(name="memory", model=model(tollgate, dev_key), model_settings=ModelSettings(store=store))

    async def go():
        first = await Runner.run(agent, "my name is Ada", run_config=RunConfig())
        return await Runner.run(agent, "what is my name?", previous_response_id=first.last_response_id)

    if store:
        assert asyncio.run(go()).final_output == "Mock reply to: what is my name?"
    else:
        # Chaining on an answer that was not stored is the API's 404, raised by the SDK.
        with pytest.raises(Exception, match="not found"):
            asyncio.run(go())
