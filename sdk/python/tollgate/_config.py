"""Where the gateway is and who the agent is: `configure()` or environment variables."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import urlsplit

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


class ConfigurationError(ValueError):
    """The SDK is not configured: no key, or a base URL that is not http(s)."""


@dataclass(frozen=True)
class Config:
    """The gateway's address, the agent's virtual key and the W3C trace context to join."""

    base_url: str = DEFAULT_BASE_URL
    api_key: str = field(default="", repr=False)
    traceparent: Optional[str] = None

    @property
    def openai_base_url(self) -> str:
        """Base URL for OpenAI clients (`.../v1`)."""
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for Anthropic clients (they add `/v1` themselves)."""
        return self.base_url

    @property
    def grpc_target(self) -> str:
        """`host:port` of the runtime service (the gateway's own address)."""
        parts = urlsplit(self.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.hostname}:{port}"

    @property
    def secure(self) -> bool:
        return self.base_url.startswith("https://")

    def headers(self) -> dict[str, str]:
        """Headers every call carries besides the key."""
        return {"traceparent": self.traceparent} if self.traceparent else {}

    def require_key(self) -> str:
        if not self.api_key:
            raise ConfigurationError(
                "no Tollgate API key: set TOLLGATE_API_KEY or call tollgate.configure(api_key=...)"
            )
        return self.api_key


def _normalise(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base URL {url!r} must be http(s)://host[:port]")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


_lock = threading.Lock()
_config: Optional[Config] = None


def configure(
    base_url: Optional[str] = None,
    api_key: Optional[str] = None,
    traceparent: Optional[str] = None,
) -> Config:
    """Sets the SDK's configuration. Anything not given comes from `TOLLGATE_BASE_URL`
    (default http://127.0.0.1:8080), `TOLLGATE_API_KEY` and `TRACEPARENT`."""
    global _config
    tp = traceparent if traceparent is not None else os.environ.get("TRACEPARENT")
    if tp and not _TRACEPARENT.match(tp.strip()):
        raise ConfigurationError(f"traceparent {tp!r} is not a W3C traceparent")
    cfg = Config(
        base_url=_normalise(base_url or os.environ.get("TOLLGATE_BASE_URL") or DEFAULT_BASE_URL),
        api_key=(api_key if api_key is not None else os.environ.get("TOLLGATE_API_KEY", "")).strip(),
        traceparent=tp.strip() if tp else None,
    )
    with _lock:
        _config = cfg
    from . import _runtime

    _runtime.reset()
    return cfg


def config() -> Config:
    """The configuration in force (from the environment on first use)."""
    with _lock:
        cfg = _config
    return cfg if cfg is not None else configure()
