"""Exceptions mirroring the Rust SDK's errors. Gateway refusals become types agent code can
catch: a budget that ran out, a safety policy, a rate limit, a denied tool."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Mapping, Optional


class TollgateError(Exception):
    """Base of every SDK error."""

    def __init__(self, message: str = "", **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        for k, v in fields.items():
            setattr(self, k, v)


class BudgetExceeded(TollgateError):
    """A hard budget cannot cover the request until it resets (HTTP 429 `budget_exceeded`).

    Attributes: `budget` (namespace/name), `remaining_micros` (int, micro-USD),
    `resets_at` (datetime or None)."""

    budget: str
    remaining_micros: int
    resets_at: Optional[datetime]


class PolicyViolation(TollgateError):
    """A safety policy blocked the request or the reply. Attributes: `policy`, `rule`."""

    policy: str
    rule: str


class ToolDenied(TollgateError):
    """The runtime service denied a tool call. Attributes: `tool`, `policy`, `rule`, `reason`."""

    tool: str
    policy: str
    rule: str
    reason: str


class RateLimited(TollgateError):
    """A rate limit; `retry_after` is seconds (float) when the gateway said."""

    retry_after: Optional[float]


class AuthenticationError(TollgateError):
    """No key, or an unknown, revoked or expired one."""


class PermissionDenied(TollgateError):
    """The key may not do this."""


class InvalidRequest(TollgateError):
    """The request is malformed; `param` names the field when known."""

    param: Optional[str]


class NotFound(TollgateError):
    """An unknown model, budget or path."""


class Unavailable(TollgateError):
    """The gateway or the provider is unavailable for now; retry."""


class APIError(TollgateError):
    """Any other error answer. Attributes: `status`, `code`."""

    status: int
    code: str


def _header(headers: Mapping[str, str], name: str) -> Optional[str]:
    try:
        return headers.get(name)  # httpx.Headers and dicts of lower-case names
    except Exception:  # pragma: no cover - exotic mappings
        return None


def _time(value: Optional[str]) -> Optional[datetime]:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def violation_from_message(message: str) -> tuple[str, str]:
    """Policy and rule out of the gateway's violation message (stream error events carry no
    headers): "... by safety policy P: rule R (...)"."""
    marker = "safety policy "
    at = message.find(marker)
    if at < 0:
        return "", ""
    rest = message[at + len(marker):]
    policy, sep, rest = rest.partition(": rule ")
    if not sep:
        return "", ""
    rule = rest.replace(",", " ").split(" ", 1)[0]
    return policy, rule


def error_class(status: int, code: str) -> type[TollgateError]:
    """The exception class for an HTTP status and gateway error code."""
    if code == "budget_exceeded":
        return BudgetExceeded
    if code == "policy_violation":
        return PolicyViolation
    if status == 429 or code == "rate_limit_error":
        return RateLimited
    if status == 401 or code == "authentication_error":
        return AuthenticationError
    if status == 403 or code == "permission_error":
        return PermissionDenied
    if status == 404 or code == "not_found_error":
        return NotFound
    if status in (400, 413, 415, 422):
        return InvalidRequest
    if status in (503, 529):
        return Unavailable
    return APIError


def fields_from_response(status: int, headers: Mapping[str, str], body: Any) -> tuple[type[TollgateError], str, dict]:
    """(class, message, attributes) of an error answer in the OpenAI or Anthropic format."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = json.loads(body)
        except ValueError:
            body = {"error": {"message": body[:500].decode("utf-8", "replace")}}
    error = body.get("error", body) if isinstance(body, dict) else {}
    if not isinstance(error, dict):
        error = {"message": str(error)}
    message = str(error.get("message") or "")
    code = str(error.get("code") or error.get("type") or "")
    cls = error_class(status, code)
    fields: dict = {}
    if cls is BudgetExceeded:
        remaining = _header(headers, "x-tollgate-budget-remaining-micros")
        fields = {
            "budget": _header(headers, "x-tollgate-budget") or "",
            "remaining_micros": int(remaining) if remaining and remaining.isdigit() else 0,
            "resets_at": _time(_header(headers, "x-tollgate-budget-reset")),
        }
    elif cls is PolicyViolation:
        policy, rule = _header(headers, "x-tollgate-policy"), _header(headers, "x-tollgate-rule")
        if not (policy and rule):
            policy, rule = violation_from_message(message)
        fields = {"policy": policy, "rule": rule}
    elif cls is RateLimited:
        ra = _header(headers, "retry-after")
        try:
            fields = {"retry_after": float(ra) if ra else None}
        except ValueError:
            fields = {"retry_after": None}
    elif cls is InvalidRequest:
        fields = {"param": error.get("param")}
    elif cls is APIError:
        fields = {"status": status, "code": code}
    return cls, message, fields


def from_response(status: int, headers: Mapping[str, str], body: Any) -> TollgateError:
    """The exception for an HTTP error answer."""
    cls, message, fields = fields_from_response(status, headers, body)
    return cls(message, **fields)


def from_openai_error(error: BaseException) -> Optional[TollgateError]:
    """The SDK exception behind an `openai`/`anthropic` exception, when it came from the
    gateway (for example an `APIError` raised by a stream the gateway ended)."""
    seen = error
    while seen is not None:  # frameworks (LangChain) wrap the client's error; look inside
        if isinstance(seen, TollgateError):
            return seen
        seen = seen.__cause__ or seen.__context__
    response = getattr(error, "response", None)
    body = getattr(error, "body", None)
    if response is not None:
        return from_response(response.status_code, response.headers, response.content)
    if isinstance(body, dict):
        code = str(body.get("code") or body.get("type") or "")
        status = 400 if code == "policy_violation" else 502
        return from_response(status, {}, {"error": body})
    return None
