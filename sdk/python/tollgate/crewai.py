"""CrewAI: `guard_tools(tools)` wraps CrewAI tools so every call is checked with the
gateway's `CheckTool` first (same behaviour as `tollgate.langchain.guard_tools`)."""

from __future__ import annotations

from typing import Any, Sequence

from crewai.tools import BaseTool

from ._guard import check_on_deny, guarded_call


class GuardedTool(BaseTool):
    """A CrewAI tool that asks the gateway before it runs its inner tool."""

    inner: Any
    on_deny: str = "raise"
    run_id: str = ""

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        arguments = dict(kwargs) if kwargs else ({"input": args[0]} if len(args) == 1 else {"args": list(args)})
        return guarded_call(self.name, arguments, self.on_deny, lambda a: self.inner.run(**a), self.run_id)


def guard_tools(tools: Sequence[Any], *, on_deny: str = "raise", run_id: str = "") -> list[Any]:
    """Wraps each CrewAI tool; name, description and argument schema are unchanged."""
    check_on_deny(on_deny)
    return [
        t
        if isinstance(t, GuardedTool)
        else GuardedTool(
            name=t.name,
            description=t.description,
            args_schema=t.args_schema,
            inner=t,
            on_deny=on_deny,
            run_id=run_id,
        )
        for t in tools
    ]
