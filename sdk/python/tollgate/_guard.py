"""Shared by the LangChain and CrewAI tool guards: ask `CheckTool`, then run, refuse or raise."""

from __future__ import annotations

from typing import Any, Callable

from . import errors
from ._runtime import ToolVerdict, check_tool

ON_DENY = ("raise", "return")


def refusal_text(v: ToolVerdict) -> str:
    """What the agent sees as the tool's result when a call is refused with on_deny="return"."""
    return (
        f"Tool call refused by Tollgate: {v.reason or 'denied by policy'} "
        f"(policy {v.policy}, rule {v.rule}). Do not retry this call; choose another approach."
    )


def guarded_call(
    name: str, arguments: dict, on_deny: str, run: Callable[[dict], Any], run_id: str = ""
) -> Any:
    verdict = check_tool(name, arguments, run_id=run_id)
    if not verdict.allowed:
        if on_deny == "return":
            return refusal_text(verdict)
        raise errors.ToolDenied(
            verdict.reason, tool=name, policy=verdict.policy, rule=verdict.rule, reason=verdict.reason
        )
    return run(verdict.arguments)


def check_on_deny(on_deny: str) -> None:
    if on_deny not in ON_DENY:
        raise ValueError(f"on_deny must be one of {ON_DENY}, not {on_deny!r}")
