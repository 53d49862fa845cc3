"""Anthropic Messages API."""

from __future__ import annotations

from typing import Any

from distillery_services.oracle_gateway.providers.base import ProviderError, ProviderRequest, ProviderResponse
from distillery_services.oracle_gateway.providers.http_base import HttpProvider, messages_for

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider(HttpProvider):
    kind = "anthropic"
    default_base_url = "https://api.anthropic.com"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_output_tokens + self.thinking_budget,
            "messages": messages_for(request.prompt, request.repair_turns),
        }
        if self.thinking_budget:
            # Extended thinking requires temperature 1 and a budget of at least 1024 tokens.
            body["thinking"] = {"type": "enabled", "budget_tokens": max(1024, self.thinking_budget)}
        else:
            body["temperature"] = request.temperature
        return body

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        data, raw = self.request_json("POST", "/v1/messages", json_body=self.body(request),
                                      timeout=request.timeout_seconds)
        response = self.read(data, raw)
        response.rate = self.last_rate()
        return response

    def read(self, data: dict, raw: str) -> ProviderResponse:
        content = data.get("content")
        if not isinstance(content, list):
            raise ProviderError(f"{self.name}: response without content blocks", retryable=True)
        text = "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
        usage = data.get("usage") or {}
        return ProviderResponse(
            text=text, model=str(data.get("model") or self.model),
            input_tokens=int(usage.get("input_tokens") or 0) + int(usage.get("cache_creation_input_tokens") or 0),
            cached_input_tokens=int(usage.get("cache_read_input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0), raw=raw)
