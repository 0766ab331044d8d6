"""Tollgate SDK for agents.

    import tollgate
    tollgate.configure()          # or TOLLGATE_BASE_URL / TOLLGATE_API_KEY
    tollgate.patch()              # openai / anthropic clients now go through the gateway

    verdict = tollgate.check_tool("http_get", {"url": "https://example.com"})
    arguments = verdict.raise_for_denial()

LangChain: `tollgate.langchain.guard_tools(tools)`; CrewAI: `tollgate.crewai.guard_tools(tools)`.
"""

from ._config import Config, ConfigurationError, config, configure
from ._patch import patch, unpatch
from ._runtime import Budget, Finding, TextVerdict, ToolVerdict, budget, budgets, check_tool, validate_text
from .errors import (
    APIError,
    AuthenticationError,
    BudgetExceeded,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    PolicyViolation,
    RateLimited,
    TollgateError,
    ToolDenied,
    Unavailable,
    from_openai_error,
)

__version__ = "0.1.0"

__all__ = [
    "APIError", "AuthenticationError", "Budget", "BudgetExceeded", "Config", "ConfigurationError",
    "Finding", "InvalidRequest", "NotFound", "PermissionDenied", "PolicyViolation", "RateLimited",
    "TextVerdict", "TollgateError", "ToolDenied", "ToolVerdict", "Unavailable", "budget", "budgets",
    "check_tool", "config", "configure", "from_openai_error", "patch", "unpatch", "validate_text",
]
