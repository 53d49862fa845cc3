"""The provider interface: one chat-style call that returns text, the exact model id and token usage.

Providers know nothing of gRPC, Kafka, budgets or retries: they make exactly one HTTP attempt and raise a
typed :class:`ProviderError` that tells the engine whether (and when) a retry makes sense.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from distillery.articles import Article
from distillery.filters.spec import FilterSpec


@dataclass
class ProviderRequest:
    """What the engine asks of a provider for one article."""

    prompt: str
    spec: FilterSpec
    article: Article
    temperature: float = 0.0
    max_output_tokens: int = 1024
    json_schema: dict[str, Any] | None = None
    # Earlier assistant answer + corrective user message when a response failed validation.
    repair_turns: list[tuple[str, str]] = field(default_factory=list)
    timeout_seconds: float = 60.0


@dataclass
class ProviderResponse:
    """One completed call."""

    text: str
    model: str
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    raw: str = ""
    # What the provider said about its rate limits with this answer (headers), when it said anything.
    rate: Any = None


class ProviderError(RuntimeError):
    """A failed call. ``retryable`` says whether backoff + retry can help; ``retry_after`` is the server's hint."""

    code = "UNAVAILABLE"

    def __init__(self, message: str, *, retryable: bool, status: int = 0, retry_after: float | None = None,
                 rate: Any = None, timed_out: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.rate = rate  # RateInfo from the error's headers, when any
        self.timed_out = timed_out


class RateLimitedError(ProviderError):
    code = "RESOURCE_EXHAUSTED"


class AuthError(ProviderError):
    """Bad or missing key: never retried."""

    code = "PERMISSION_DENIED"


class BadRequestError(ProviderError):
    code = "INVALID_ARGUMENT"


class Provider(ABC):
    """Base class: ``kind`` names the provider family, ``model`` the configured model."""

    kind = "base"

    def __init__(self, name: str, model: str):
        self.name = name
        self.model = model

    @abstractmethod
    def complete(self, request: ProviderRequest) -> ProviderResponse:
        """Make exactly one attempt; raise ProviderError on failure."""

    def estimate_input_tokens(self, prompt: str) -> int:
        """A cheap, provider-independent estimate (about 4 characters per token) for pacing and dry runs."""
        return max(1, len(prompt) // 4)

    def close(self) -> None:
        """Release connections (HTTP clients)."""


def redact(text: str, secrets: list[str]) -> str:
    """Remove every secret (API keys) from a message before it is logged or returned."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    # Common key shapes, even when not configured here (e.g. echoed back by a server).
    text = re.sub(r"(sk-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,})", "***", text)
    return re.sub(r"(?i)(key=)[^&\s]+", r"\1***", text)
