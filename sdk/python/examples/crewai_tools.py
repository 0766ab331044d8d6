"""CrewAI tools guarded by Tollgate, and a CrewAI LLM call through the gateway."""

from crewai import LLM
from crewai.tools import tool

import tollgate
from tollgate.crewai import guard_tools

tollgate.configure()  # TOLLGATE_BASE_URL and TOLLGATE_API_KEY (the agent's virtual key)
tollgate.patch()      # CrewAI's OpenAI provider now talks to the gateway with that key


@tool("search_docs")
def search_docs(query: str) -> str:
    """Searches the team's documentation."""
    return f"3 documents about {query}"


@tool("files_delete")
def files_delete(path: str) -> str:
    """Deletes a file."""
    raise RuntimeError("never runs: the agents policy denies *_delete tools")


search, delete = guard_tools([search_docs, files_delete])
print(search.run(query="budgets"))
try:
    delete.run(path="/data/important.csv")
except tollgate.ToolDenied as denied:
    print(f"denied: {denied.tool} by {denied.policy} ({denied.rule})")

# Agents built with these tools and this LLM stay inside the gateway.
# custom_openai: any model name, served by CrewAI's native OpenAI provider (the gateway).
cfg = tollgate.config()
llm = LLM(model="mock-1", custom_openai=True, base_url=cfg.openai_base_url, api_key=cfg.api_key)
print(llm.call("Summarise our budget policy in one line."))
