"""The gateway's gRPC runtime service (`tollgate.v1.Runtime`): tool verdicts, text checks and
budget state, authenticated with the agent's virtual key."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

import grpc

from . import errors
from ._config import config
from .v1 import runtime_pb2 as pb

_lock = threading.Lock()
_channel: Optional[grpc.Channel] = None
_methods: dict[str, Any] = {}

_SERVICE = "/tollgate.v1.Runtime/"
_TYPES = {
    "CheckTool": (pb.CheckToolRequest, pb.CheckToolResponse),
    "ValidateText": (pb.ValidateTextRequest, pb.ValidateTextResponse),
    "GetBudget": (pb.GetBudgetRequest, pb.GetBudgetResponse),
}


def reset() -> None:
    """Drops the channel (after `configure()` changed the address)."""
    global _channel
    with _lock:
        if _channel is not None:
            _channel.close()
        _channel = None
        _methods.clear()


def _method(name: str) -> Any:
    global _channel
    with _lock:
        if name not in _methods:
            cfg = config()
            if _channel is None:
                target = cfg.grpc_target
                _channel = (
                    grpc.secure_channel(target, grpc.ssl_channel_credentials())
                    if cfg.secure
                    else grpc.insecure_channel(target)
                )
            req, res = _TYPES[name]
            _methods[name] = _channel.unary_unary(
                _SERVICE + name,
                request_serializer=req.SerializeToString,
                response_deserializer=res.FromString,
            )
        return _methods[name]


def _error(e: grpc.RpcError) -> errors.TollgateError:
    code, message = e.code(), e.details() or ""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return errors.AuthenticationError(message)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return errors.PermissionDenied(message)
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFound(message)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        param = message.split(":", 1)[0] if ":" in message else None
        return errors.InvalidRequest(message, param=param)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return errors.RateLimited(message, retry_after=None)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return errors.Unavailable(message)
    return errors.APIError(message, status=0, code=code.name.lower())


def _call(name: str, request: Any, timeout: float) -> Any:
    cfg = config()
    metadata = [("authorization", f"Bearer {cfg.require_key()}")]
    metadata += list(cfg.headers().items())
    try:
        return _method(name)(request, metadata=metadata, timeout=timeout)
    except grpc.RpcError as e:
        raise _error(e) from None


@dataclass(frozen=True)
class Finding:
    """One rule that matched (never the matched text)."""

    policy: str
    rule: str
    category: str
    action: str
    audit: bool
    path: str


def _findings(items: Any) -> list[Finding]:
    return [Finding(f.policy, f.rule, f.category, f.action, f.audit, f.path) for f in items]


@dataclass(frozen=True)
class ToolVerdict:
    """What a tool call may do. `decision` is "allow", "allow_redacted" or "deny"."""

    tool: str
    decision: str
    arguments: Any = None
    policy: str = ""
    rule: str = ""
    reason: str = ""
    findings: list[Finding] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return self.decision != "deny"

    def raise_for_denial(self) -> Any:
        """The arguments to run the tool with (redacted if a policy said so), or raises
        `ToolDenied`."""
        if not self.allowed:
            raise errors.ToolDenied(
                self.reason, tool=self.tool, policy=self.policy, rule=self.rule, reason=self.reason
            )
        return self.arguments


def check_tool(
    tool: str, arguments: Any = None, *, run_id: str = "", tool_call_id: str = "", timeout: float = 10.0
) -> ToolVerdict:
    """Asks whether the agent may run `tool` with `arguments` (a JSON-serialisable value).
    A denial is a verdict, not an exception; call `.raise_for_denial()` to raise it."""
    arguments = {} if arguments is None else arguments
    request = pb.CheckToolRequest(
        tool=tool,
        arguments_json=json.dumps(arguments, default=str),
        context=pb.ToolContext(run_id=run_id, tool_call_id=tool_call_id),
    )
    r = _call("CheckTool", request, timeout)
    findings = _findings(r.findings)
    if r.decision == pb.DECISION_ALLOW:
        return ToolVerdict(tool, "allow", arguments, findings=findings)
    if r.decision == pb.DECISION_ALLOW_REDACTED:
        return ToolVerdict(tool, "allow_redacted", json.loads(r.redacted_arguments_json), findings=findings)
    if r.decision == pb.DECISION_DENY:
        return ToolVerdict(tool, "deny", None, r.policy, r.rule, r.reason, findings)
    raise errors.APIError("a verdict without a decision", status=0, code="unspecified")


@dataclass(frozen=True)
class TextVerdict:
    """A text check: `decision` is "allow", "allow_redacted" or "deny"; `text` is what to use."""

    decision: str
    text: Optional[str]
    policy: str = ""
    rule: str = ""
    reason: str = ""
    findings: list[Finding] = field(default_factory=list)


def validate_text(text: str, stage: str = "input", *, timeout: float = 10.0) -> TextVerdict:
    """Checks `text` against the agent's safety policies; `stage` is "input" or "output"."""
    stages = {"input": pb.STAGE_INPUT, "output": pb.STAGE_OUTPUT}
    if stage not in stages:
        raise ValueError(f"stage must be 'input' or 'output', not {stage!r}")
    r = _call("ValidateText", pb.ValidateTextRequest(text=text, stage=stages[stage]), timeout)
    findings = _findings(r.findings)
    if r.decision == pb.DECISION_ALLOW_REDACTED:
        return TextVerdict("allow_redacted", r.redacted_text, findings=findings)
    if r.decision == pb.DECISION_DENY:
        return TextVerdict("deny", None, r.policy, r.rule, r.reason, findings)
    return TextVerdict("allow", text, findings=findings)


@dataclass(frozen=True)
class Budget:
    """A budget's state in its current period; money is integer micro-USD."""

    name: str
    subject_kind: str
    subject_name: str
    hard: bool
    limit_micros: int
    spent_micros: int
    reserved_micros: int
    remaining_micros: int
    period_start: Optional[datetime]
    resets_at: Optional[datetime]
    exhausted: bool
    parent: Optional[str]


def _time(s: str) -> Optional[datetime]:
    return datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None


def budgets(*, timeout: float = 10.0) -> list[Budget]:
    """The budgets the agent's requests count against (its own, its team's, their parents)."""
    r = _call("GetBudget", pb.GetBudgetRequest(), timeout)
    return [
        Budget(
            b.name, b.subject_kind, b.subject_name, b.enforcement == "hard", b.limit_micros,
            b.spent_micros, b.reserved_micros, b.remaining_micros, _time(b.period_start),
            _time(b.period_end), b.exhausted, b.parent or None,
        )
        for b in r.budgets
    ]


def budget(name: str, *, timeout: float = 10.0) -> Budget:
    """One budget by `namespace/name` (or a name in `default`); `NotFound` if it does not
    apply to the agent."""
    r = _call("GetBudget", pb.GetBudgetRequest(name=name), timeout)
    if not r.budgets:
        raise errors.NotFound(f"no budget {name!r}")
    b = r.budgets[0]
    return Budget(
        b.name, b.subject_kind, b.subject_name, b.enforcement == "hard", b.limit_micros,
        b.spent_micros, b.reserved_micros, b.remaining_micros, _time(b.period_start),
        _time(b.period_end), b.exhausted, b.parent or None,
    )
