"""Google Gemini generateContent (the key travels in a header, never in the URL)."""

from __future__ import annotations

from typing import Any

from distillery_services.oracle_gateway.providers.base import ProviderError, ProviderRequest, ProviderResponse
from distillery_services.oracle_gateway.providers.http_base import HttpProvider


class GeminiProvider(HttpProvider):
    kind = "gemini"
    default_base_url = "https://generativelanguage.googleapis.com"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key} if api_key else {}

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        contents = [{"role": "user", "parts": [{"text": request.prompt}]}]
        for answer, correction in request.repair_turns:
            contents.append({"role": "model", "parts": [{"text": answer}]})
            contents.append({"role": "user", "parts": [{"text": correction}]})
        config: dict[str, Any] = {
            "temperature": request.temperature,
            "maxOutputTokens": request.max_output_tokens + self.thinking_budget,
            "thinkingConfig": {"thinkingBudget": self.thinking_budget},
        }
        if self.json_mode != "off":
            config["responseMimeType"] = "application/json"
        return {"contents": contents, "generationConfig": config}

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        data, raw = self.request_json("POST", f"/v1beta/models/{self.model}:generateContent",
                                      json_body=self.body(request), timeout=request.timeout_seconds)
        try:
            parts = data["candidates"][0]["content"]["parts"]
        except (KeyError, IndexError, TypeError):
            reason = (data.get("promptFeedback") or {}).get("blockReason") or "no candidates"
            raise ProviderError(f"{self.name}: response without content ({reason})", retryable=True) from None
        text = "".join(p.get("text", "") for p in parts if isinstance(p, dict) and not p.get("thought"))
        usage = data.get("usageMetadata") or {}
        cached = int(usage.get("cachedContentTokenCount") or 0)
        return ProviderResponse(
            text=text, model=str(data.get("modelVersion") or self.model),
            input_tokens=max(int(usage.get("promptTokenCount") or 0) - cached, 0), cached_input_tokens=cached,
            output_tokens=int(usage.get("candidatesTokenCount") or 0) + int(usage.get("thoughtsTokenCount") or 0),
            raw=raw, rate=self.last_rate())
