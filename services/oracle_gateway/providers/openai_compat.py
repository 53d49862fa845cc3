"""OpenAI-compatible chat completions: OpenAI, DeepSeek, OpenRouter, vLLM, Ollama, llama.cpp servers."""

from __future__ import annotations

from typing import Any

from distillery_services.oracle_gateway.providers.base import ProviderError, ProviderRequest, ProviderResponse
from distillery_services.oracle_gateway.providers.http_base import HttpProvider, messages_for


class OpenAIProvider(HttpProvider):
    kind = "openai"
    default_base_url = "https://api.openai.com/v1"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages_for(request.prompt, request.repair_turns),
            "temperature": request.temperature,
            "max_tokens": request.max_output_tokens + self.thinking_budget,
        }
        if self.json_mode == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif self.json_mode == "json_schema" and request.json_schema:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "oracle_label", "schema": request.json_schema}}
        if self.thinking_budget:
            body["reasoning_effort"] = "low" if self.thinking_budget <= 2048 else "medium"
        return body

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        data, raw = self.request_json("POST", "/chat/completions", json_body=self.body(request),
                                      timeout=request.timeout_seconds)
        response = self.read(data, raw)
        response.rate = self.last_rate()
        return response

    def read(self, data: dict, raw: str) -> ProviderResponse:
        try:
            text = data["choices"][0]["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(f"{self.name}: response without choices[0].message", retryable=True) from None
        usage = data.get("usage") or {}
        cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
        prompt = int(usage.get("prompt_tokens") or 0)
        return ProviderResponse(text=text, model=str(data.get("model") or self.model),
                                input_tokens=max(prompt - cached, 0), cached_input_tokens=cached,
                                output_tokens=int(usage.get("completion_tokens") or 0), raw=raw)
