"""The Python SDK's CrewAI guard with the real `crewai` package. It runs in its own virtual
environment (.venv-crewai, made by scripts/test.sh) because crewai pins openai<3 and
pydantic<2.13, which the main suite's packages outgrew; elsewhere it is skipped."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

crewai = pytest.importorskip("crewai", reason="crewai runs in .venv-crewai (scripts/test.sh)")

import tollgate  # noqa: E402
from conftest import start_tollgate  # noqa: E402

SDK = Path(__file__).resolve().parents[2] / "sdk" / "python"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    t = start_tollgate(tmp_path_factory.mktemp("crew"), (SDK / "examples" / "resources.yaml").read_text())
    yield t
    t.proc.stop()


def test_crewai_tools_are_guarded(gateway):
    from crewai.tools import tool

    from tollgate.crewai import guard_tools

    ran = []

    @tool("files_delete")
    def files_delete(path: str) -> str:
        """Deletes a file."""
        ran.append(path)
        return "deleted"

    @tool("search_docs")
    def search_docs(query: str) -> str:
        """Searches documents."""
        ran.append(query)
        return f"found {query}"

    tollgate.configure(base_url=gateway.url, api_key=gateway.create_key("crew-agent", kind="agent"))
    search, delete = guard_tools([search_docs, files_delete])
    assert search.name == "search_docs" and search.description == search_docs.description
    assert search.run(query="budgets") == "found budgets"
    with pytest.raises(tollgate.ToolDenied) as e:
        delete.run(path="/data/x.csv")
    assert (e.value.tool, e.value.policy, e.value.rule) == ("files_delete", "default/agents", "tools.deny")
    [returning] = guard_tools([files_delete], on_deny="return")
    assert "refused by Tollgate" in returning.run(path="/data/x.csv")
    assert ran == ["budgets"], "a denied tool never runs"


def test_readme_crewai_example_runs_as_written(gateway):
    key = gateway.create_key("research-agent", kind="agent")
    env = {**os.environ, "TOLLGATE_BASE_URL": gateway.url, "TOLLGATE_API_KEY": key, "OPENAI_API_KEY": "sk-x"}
    out = subprocess.run([sys.executable, str(SDK / "examples" / "crewai_tools.py")], env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "3 documents about budgets" in lines
    assert "denied: files_delete by default/agents (tools.deny)" in lines
    assert "Mock reply to: Summarise our budget policy in one line." in lines
