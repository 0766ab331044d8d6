"""A LangChain tool-calling agent whose LLM calls and tool calls go through Tollgate."""

import json

from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

import tollgate
from tollgate.langchain import guard_tools

tollgate.configure()  # TOLLGATE_BASE_URL and TOLLGATE_API_KEY (the agent's virtual key)
tollgate.patch()      # ChatOpenAI's client now talks to the gateway with that key


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city}"


@tool
def http_get(url: str) -> str:
    """Fetches a URL."""
    return f"200 OK from {url}"


# Every call is checked with the gateway first. Denied calls come back to the model as a
# refusal it can read ("return"), or raise tollgate.ToolDenied ("raise", the default).
tools = guard_tools([get_weather, http_get], on_deny="return")
by_name = {t.name: t for t in tools}

# The mock provider plays the model: it asks for both tools once, then answers in text.
script = [
    {"name": "get_weather", "arguments": {"city": "Paris"}},
    {"name": "http_get", "arguments": {"url": "https://example.com/forecast"}},
]
llm = ChatOpenAI(
    model="mock-1",
    default_headers={"x-mock-tool-calls": json.dumps(script), "x-mock-tool-rounds": "1"},
).bind_tools(tools)

messages = [HumanMessage("What is the weather in Paris?")]
while True:
    reply = llm.invoke(messages)
    messages.append(reply)
    if not reply.tool_calls:
        break
    for call in reply.tool_calls:
        messages.append(by_name[call["name"]].invoke(call))

for m in messages[1:]:
    print(f"{type(m).__name__}: {m.content or m.tool_calls}")

# A call the policy denies never runs, however it was chosen (the gateway also blocks a
# model reply that asks for it, and a request that defines a denied tool).
print(by_name["http_get"].invoke({"url": "http://169.254.169.254/latest/meta-data/"}))
for b in tollgate.budgets():
    print(f"budget {b.name}: spent {b.spent_micros} of {b.limit_micros} micro-USD")
