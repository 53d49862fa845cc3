"""Shared HTTP plumbing for LLM providers: one httpx client, status -> typed error, Retry-After parsing.

SDK-free on purpose: the gateway owns retries (a single attempt per call here), so that limits,
budgets and metrics see every attempt.
"""

from __future__ import annotations

import email.utils
import threading
import time
from typing import Any

import httpx
from distillery_services.oracle_gateway.providers.base import (
    AuthError,
    BadRequestError,
    Provider,
    ProviderError,
    RateLimitedError,
    redact,
)
from distillery_services.oracle_gateway.ratelimit import RateInfo, rate_info

# Answers of some providers to a wrong key that are not 401/403 (Gemini: 400 API_KEY_INVALID).
_INVALID_KEY = ("api_key_invalid", "invalid api key", "invalid_api_key", "incorrect api key", "invalid x-api-key")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpProvider(Provider):
    """A provider spoken over HTTP/JSON with httpx; subclasses build the body and read the answer."""

    default_base_url = ""

    def __init__(self, name: str, model: str, base_url: str, api_key: str, timeout_seconds: float,
                 max_connections: int = 16, json_mode: str = "json_object", thinking_budget: int = 0):
        super().__init__(name, model)
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self._key = api_key
        self.json_mode = json_mode
        self.thinking_budget = thinking_budget
        self.timeout_seconds = timeout_seconds
        self._last = threading.local()
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_seconds, connect=min(10.0, timeout_seconds)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers=self.auth_headers(api_key),
        )

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {}

    def _redact(self, text: str) -> str:
        return redact(text, [self._key])

    def request_json(self, method: str, path: str, *, json_body: Any = None, timeout: float | None = None,
                     **kwargs: Any) -> tuple[dict, str]:
        """One HTTP call; returns (parsed JSON, raw text) or raises a typed ProviderError (key redacted)."""
        url = f"{self.base_url}{path}"
        limit = timeout or self.timeout_seconds
        self._last.rate = None
        try:
            resp = self._client.request(method, url, json=json_body, timeout=limit, **kwargs)
        except httpx.TimeoutException as exc:
            raise ProviderError(f"{self.name}: timed out after {limit:.3g}s ({type(exc).__name__})",
                                retryable=True, timed_out=True) from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"{self.name}: connection failed: {self._redact(str(exc))}", retryable=True) from None
        raw = resp.text
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        self._last.rate = rate_info(resp.headers, retry_after)
        try:
            self.check_status(resp.status_code, raw, resp.headers.get("retry-after"))
        except ProviderError as exc:
            exc.rate = self._last.rate
            if exc.rate is not None and exc.rate.retry_after is not None:
                exc.retry_after = exc.rate.retry_after  # retry-after-ms is finer than Retry-After
            raise
        try:
            return resp.json(), raw
        except ValueError:
            raise ProviderError(f"{self.name}: HTTP {resp.status_code} with a body that is not JSON",
                                retryable=True, status=resp.status_code) from None

    def last_rate(self) -> RateInfo | None:
        """The rate-limit headers of this thread's last answer (None when it carried none)."""
        return getattr(self._last, "rate", None)

    def check_status(self, status: int, body: str, retry_after: str | None) -> None:
        if status < 400:
            return
        snippet = self._redact(body[:300].replace("\n", " "))
        msg = f"{self.name}: HTTP {status}: {snippet}"
        if status == 429:
            raise RateLimitedError(msg, retryable=True, status=status, retry_after=parse_retry_after(retry_after))
        if status in (401, 403) or (status == 400 and any(s in body.lower() for s in _INVALID_KEY)):
            raise AuthError(f"{self.name}: HTTP {status}: the provider rejected the API key ({snippet})",
                            retryable=False, status=status)
        if status in (408, 409, 425) or status >= 500:
            raise ProviderError(msg, retryable=True, status=status, retry_after=parse_retry_after(retry_after))
        raise BadRequestError(msg, retryable=False, status=status)

    def close(self) -> None:
        self._client.close()


def messages_for(prompt: str, repair_turns: list[tuple[str, str]]) -> list[dict[str, str]]:
    """user prompt, then (assistant answer, corrective user message) pairs."""
    messages = [{"role": "user", "content": prompt}]
    for answer, correction in repair_turns:
        messages.append({"role": "assistant", "content": answer})
        messages.append({"role": "user", "content": correction})
    return messages
