"""`tollgate.patch()`: the official `openai` and `anthropic` clients go through the gateway
with the agent's key, and gateway refusals raise the SDK's exceptions (which are also the
clients' own exception types, so existing `except openai.RateLimitError` code keeps working).

A client built with an explicit `base_url` that is not the gateway is left alone, as are
Azure OpenAI clients. NB: error translation overrides `_make_status_error`, the hook every
Stainless-generated client (openai, anthropic) uses to build its status errors.
"""

from __future__ import annotations

import functools
import threading
import os
from typing import Any, Callable, Optional

from . import errors
from ._config import config

_lock = threading.Lock()
_originals: dict[tuple[type, str], Callable[..., Any]] = {}
_combined: dict[tuple[type, type], type] = {}
_saved_env: dict[str, Optional[str]] = {}

SDK_HEADER = ("x-tollgate-sdk", "python/0.1.0")


def _combined_class(ours: type, theirs: type) -> type:
    key = (ours, theirs)
    if key not in _combined:
        _combined[key] = type(ours.__name__, (ours, theirs), {"__module__": "tollgate.errors"})
    return _combined[key]


def _translate(err: Any, response: Any) -> Any:
    cls, message, fields = errors.fields_from_response(response.status_code, response.headers, response.content)
    if cls is errors.APIError:
        return err
    try:
        err.__class__ = _combined_class(cls, type(err))
    except TypeError:  # pragma: no cover - a client exception with an incompatible layout
        return err
    for k, v in fields.items():
        setattr(err, k, v)
    if not getattr(err, "message", None):
        err.message = message
    return err


def _routes(client: Any, kwargs: dict, gateway: str) -> bool:
    if "Azure" in type(client).__name__:
        return False
    base = kwargs.get("base_url")
    return base is None or str(base).rstrip("/") == gateway


def _patch_class(cls: type, kind: str) -> None:
    if (cls, "__init__") in _originals:
        return
    init = cls.__init__
    make_error = cls._make_status_error

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        cfg = config()
        gateway = cfg.openai_base_url if kind == "openai" else cfg.anthropic_base_url
        if _routes(self, kwargs, gateway):
            kwargs["base_url"] = gateway
            kwargs["api_key"] = cfg.require_key()
            headers = dict(kwargs.get("default_headers") or {})
            headers.update(cfg.headers())
            headers.setdefault(*SDK_HEADER)
            kwargs["default_headers"] = headers
        init(self, *args, **kwargs)

    @functools.wraps(make_error)
    def _make_status_error(self: Any, err_msg: str, *, body: Any, response: Any) -> Any:
        err = make_error(self, err_msg, body=body, response=response)
        if str(self.base_url).rstrip("/").startswith(config().base_url):
            return _translate(err, response)
        return err

    _originals[(cls, "__init__")] = init
    _originals[(cls, "_make_status_error")] = make_error
    cls.__init__ = __init__  # type: ignore[misc]
    cls._make_status_error = _make_status_error  # type: ignore[attr-defined]


def _set_env(values: dict[str, str]) -> None:
    for name, value in values.items():
        _saved_env.setdefault(name, os.environ.get(name))
        os.environ[name] = value


def patch(openai: bool = True, anthropic: bool = True) -> None:
    """Routes clients created from now on through the gateway. Idempotent. Raises
    `ConfigurationError` when no key is configured.

    Also points `OPENAI_BASE_URL`/`OPENAI_API_KEY` (and the `ANTHROPIC_` pair) at the gateway
    and the agent's key, as the operator does for agents it deploys, so libraries that read
    them (LangChain, CrewAI, LiteLLM) resolve to the gateway and no provider key is used."""
    cfg = config()
    key = cfg.require_key()
    with _lock:
        if openai:
            _set_env({"OPENAI_BASE_URL": cfg.openai_base_url, "OPENAI_API_KEY": key})
        if anthropic:
            _set_env({"ANTHROPIC_BASE_URL": cfg.anthropic_base_url, "ANTHROPIC_API_KEY": key})
        if openai:
            try:
                import openai as _openai
            except ImportError:
                pass
            else:
                _patch_class(_openai.OpenAI, "openai")
                _patch_class(_openai.AsyncOpenAI, "openai")
        if anthropic:
            try:
                import anthropic as _anthropic
            except ImportError:
                pass
            else:
                _patch_class(_anthropic.Anthropic, "anthropic")
                _patch_class(_anthropic.AsyncAnthropic, "anthropic")


def unpatch() -> None:
    """Undoes `patch()` for clients created from now on (the environment included)."""
    with _lock:
        for (cls, attr), original in _originals.items():
            setattr(cls, attr, original)
        _originals.clear()
        for name, value in _saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _saved_env.clear()
