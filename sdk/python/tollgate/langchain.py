"""LangChain: `guard_tools(tools)` wraps tools so every call is checked with the gateway's
`CheckTool` first. A denied call raises `tollgate.ToolDenied` (`on_deny="raise"`, the
default) or returns the refusal to the agent as the tool's result (`on_deny="return"`), so
the model can choose another way. Redacted arguments replace the originals."""

from __future__ import annotations

import asyncio
from typing import Any, Optional, Sequence

from langchain_core.tools import BaseTool

from ._guard import check_on_deny, guarded_call


class GuardedTool(BaseTool):
    """A tool that asks the gateway before it runs its inner tool."""

    inner: BaseTool
    on_deny: str = "raise"
    run_id: str = ""

    def _arguments(self, args: tuple, kwargs: dict) -> dict:
        if kwargs:
            return dict(kwargs)
        if len(args) == 1:
            return args[0] if isinstance(args[0], dict) else {"input": args[0]}
        return {"args": list(args)}

    def _run(self, *args: Any, run_manager: Optional[Any] = None, **kwargs: Any) -> Any:
        arguments = self._arguments(args, kwargs)
        single = not kwargs and len(args) == 1 and not isinstance(args[0], dict)

        def run(checked: dict) -> Any:
            return self.inner.invoke(checked.get("input", args[0]) if single else checked)

        return guarded_call(self.name, arguments, self.on_deny, run, self.run_id)

    async def _arun(self, *args: Any, run_manager: Optional[Any] = None, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._run, *args, **kwargs)


def guard_tools(tools: Sequence[BaseTool], *, on_deny: str = "raise", run_id: str = "") -> list[BaseTool]:
    """Wraps each tool; names, descriptions and argument schemas are unchanged, so the model
    sees the same tools."""
    check_on_deny(on_deny)
    out: list[BaseTool] = []
    for t in tools:
        if isinstance(t, GuardedTool):
            out.append(t)
            continue
        out.append(
            GuardedTool(
                name=t.name,
                description=t.description,
                args_schema=t.args_schema,
                return_direct=t.return_direct,
                inner=t,
                on_deny=on_deny,
                run_id=run_id,
            )
        )
    return out
