"""Oracle providers: synthetic (default), OpenAI-compatible, Anthropic Messages, Gemini."""

from __future__ import annotations

from distillery_services.oracle_gateway.config import OracleConfig
from distillery_services.oracle_gateway.providers.anthropic_messages import AnthropicProvider
from distillery_services.oracle_gateway.providers.base import (
    AuthError,
    BadRequestError,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    RateLimitedError,
    redact,
)
from distillery_services.oracle_gateway.providers.gemini import GeminiProvider
from distillery_services.oracle_gateway.providers.openai_compat import OpenAIProvider
from distillery_services.oracle_gateway.providers.synthetic import SYNTHETIC_MODEL, SyntheticProvider

_HTTP = {"openai": OpenAIProvider, "anthropic": AnthropicProvider, "gemini": GeminiProvider}


def build_provider(name: str, cfg: OracleConfig) -> Provider:
    if cfg.kind == "synthetic":
        return SyntheticProvider(name, cfg.noise_sigma)
    cls = _HTTP[cfg.kind]
    return cls(name, cfg.model, cfg.base_url, cfg.key(), cfg.timeout_seconds, max_connections=cfg.max_concurrency,
               json_mode=cfg.json_mode, thinking_budget=cfg.thinking_budget)


__all__ = ["SYNTHETIC_MODEL", "AnthropicProvider", "AuthError", "BadRequestError", "GeminiProvider",
           "OpenAIProvider", "Provider", "ProviderError", "ProviderRequest", "ProviderResponse", "RateLimitedError",
           "SyntheticProvider", "build_provider", "redact"]
