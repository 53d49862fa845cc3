"""Settings of the oracle gateway: oracles (providers), pricing, limits, cache, budgets, stores.

Every field is settable in the YAML ``oracle_gateway:`` section, by ``DISTILLERY_ORACLE_GATEWAY_<FIELD>``
(JSON for the mappings) and, for the main ones, by CLI flags.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from distillery import identifiers
from distillery.config import ConfigError, ServiceSettings


class Price(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, description="Prompt tokens at full price.")
    cached_input: float | None = Field(default=None, ge=0, description="Prompt tokens read from the provider's "
                                       "prompt cache (default: the input price).")
    output: float = Field(ge=0, description="Completion tokens, reasoning tokens included.")
    batch_discount: float = Field(default=0.5, gt=0, le=1, description="Multiplier for batch-API calls.")

    def cost(self, input_tokens: int, cached_input_tokens: int, output_tokens: int, batch: bool = False) -> float:
        cached = self.input if self.cached_input is None else self.cached_input
        usd = (input_tokens * self.input + cached_input_tokens * cached + output_tokens * self.output) / 1e6
        return usd * (self.batch_discount if batch else 1.0)


# Public list prices (USD per 1M tokens) seen when this table was written; override in config.
DEFAULT_PRICING: dict[str, Price] = {
    "synthetic-oracle-v1": Price(input=0, output=0),
    "gpt-4o-mini": Price(input=0.15, cached_input=0.075, output=0.60),
    "gpt-4o": Price(input=2.50, cached_input=1.25, output=10.0),
    "gpt-4.1-mini": Price(input=0.40, cached_input=0.10, output=1.60),
    "gpt-4.1-nano": Price(input=0.10, cached_input=0.025, output=0.40),
    "deepseek-chat": Price(input=0.27, cached_input=0.07, output=1.10),
    "claude-3-5-haiku": Price(input=0.80, cached_input=0.08, output=4.0),
    "claude-3-5-sonnet": Price(input=3.0, cached_input=0.30, output=15.0),
    "claude-3-7-sonnet": Price(input=3.0, cached_input=0.30, output=15.0),
    "claude-sonnet-4": Price(input=3.0, cached_input=0.30, output=15.0),
    "claude-haiku-4-5": Price(input=1.0, cached_input=0.10, output=5.0),
    "gemini-2.0-flash": Price(input=0.10, cached_input=0.025, output=0.40),
    "gemini-2.5-flash": Price(input=0.30, cached_input=0.075, output=2.50),
    "gemini-2.5-flash-lite": Price(input=0.10, cached_input=0.025, output=0.40),
    "gemini-2.5-pro": Price(input=1.25, cached_input=0.31, output=10.0),
}


class RateWindow(BaseModel):
    """A provider limit: at most ``limit`` requests (or tokens) in any ``seconds``-long window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: Literal["requests", "tokens"]
    limit: float = Field(gt=0)
    seconds: float = Field(gt=0)
    kind: Literal["sliding", "fixed"] | None = Field(default=None, description="Default: the oracle's "
                                                     "rate_window_kind.")


class OracleConfig(BaseModel):
    """One configured oracle: a provider kind, a model and its limits."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["synthetic", "openai", "anthropic", "gemini"] = Field(
        description="openai covers every OpenAI-compatible server (OpenAI, DeepSeek, OpenRouter, vLLM, Ollama).")
    model: str = Field(default="", description="Model id sent to the provider.")
    base_url: str = Field(default="", description="API root; empty uses the provider's public endpoint.")
    api_key: SecretStr | None = Field(default=None, description="Key (prefer api_key_env: keys in files leak).")
    api_key_env: str = Field(default="", description="Environment variable holding the key.")
    max_concurrency: int = Field(default=8, ge=1, description="Requests in flight to this oracle per gateway.")
    requests_per_minute: float = Field(default=0, ge=0, description="The provider's request limit; enforced per "
                                       "minute and per rate_quantum_seconds (its share); 0 = no limit.")
    tokens_per_minute: float = Field(default=0, ge=0, description="Estimated prompt+output tokens per minute; "
                                     "0 = no limit.")
    rate_quantum_seconds: float = Field(default=1.0, gt=0, le=60, description="The short window over which "
                                        "providers enforce a per-minute limit (600/min as 10 per second).")
    rate_windows: list[RateWindow] = Field(default_factory=list, description="Explicit windows (unit, limit, "
                                           "seconds) instead of those derived from the per-minute limits.")
    rate_window_kind: Literal["sliding", "fixed"] = Field(
        default="sliding", description="How the provider counts: 'sliding' is safe for every provider (up to "
        "limit per seconds + margin); 'fixed' uses the whole limit of clock-aligned fixed windows.")
    rate_margin_seconds: float = Field(default=0.03, ge=0, le=5, description="Safety margin added to every "
                                       "window: absorbs the jitter between our send and the provider's clock.")
    timeout_seconds: float = Field(default=60.0, gt=0, description="Upper bound of a request's timeout (and the "
                                   "timeout until enough latencies were observed).")
    adaptive_timeout: bool = Field(default=True, description="Time out at a high percentile of the observed "
                                   "latency times timeout_factor, within [timeout_min_seconds, timeout_seconds].")
    timeout_percentile: float = Field(default=0.99, gt=0.5, lt=1)
    timeout_factor: float = Field(default=3.0, ge=1)
    timeout_min_seconds: float = Field(default=2.0, gt=0)
    hedge_after_percentile: float = Field(default=0.0, ge=0, lt=1, description="Send a second copy of a request "
                                          "still unanswered at this latency percentile (e.g. 0.95); the first "
                                          "answer wins, both are paid (the other is recorded as unused); 0 = "
                                          "no hedging.")
    max_attempts: int = Field(default=6, ge=1, description="HTTP attempts per label (429/5xx/timeouts).")
    max_repair_attempts: int = Field(default=2, ge=0, description="Corrective re-asks after an invalid answer.")
    backoff_base_seconds: float = Field(default=0.5, gt=0)
    backoff_max_seconds: float = Field(default=30.0, gt=0)
    json_mode: Literal["off", "json_object", "json_schema"] = Field(
        default="json_object", description="Structured output where the provider has it.")
    thinking_budget: int = Field(default=0, ge=0, description="Reasoning tokens allowed; 0 turns thinking off.")
    temperature: float | None = Field(default=None, ge=0, le=2, description="Overrides the filter's temperature.")
    price: Price | None = Field(default=None, description="Overrides the pricing table for this oracle.")
    noise_sigma: float = Field(default=0.5, ge=0, description="Synthetic oracle: Gaussian noise on latent scores.")
    batch: bool = Field(default=False, description="Label jobs through the provider's batch API (half price).")
    batch_poll_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _needs_model(self) -> OracleConfig:
        if self.kind != "synthetic" and not self.model:
            raise ValueError(f"an oracle of kind {self.kind!r} needs a model")
        if self.batch and self.kind not in ("openai", "anthropic"):
            raise ValueError("batch mode exists for openai and anthropic oracles only")
        return self

    def windows(self) -> list:
        """The rate windows the limiter enforces (explicit, or derived from the per-minute limits)."""
        from distillery_services.oracle_gateway.ratelimit import Window, default_windows

        if self.rate_windows:
            return [Window(w.unit, w.limit, w.seconds, w.kind or self.rate_window_kind) for w in self.rate_windows]
        return default_windows(self.requests_per_minute, self.tokens_per_minute, self.rate_quantum_seconds,
                               self.rate_window_kind)

    def key_source(self) -> str:
        """Where the key comes from, for error messages (never the key itself)."""
        if self.api_key is not None:
            return "the api_key setting of this oracle"
        if self.api_key_env:
            state = "" if os.environ.get(self.api_key_env) else " (it is not set)"
            return f"environment variable {self.api_key_env}{state}"
        return "no key configured (set api_key_env)"

    def key(self) -> str:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            return os.environ.get(self.api_key_env, "")
        return ""


class OracleGatewaySettings(ServiceSettings):
    section: ClassVar[str] = "oracle_gateway"
    dependencies: ClassVar[tuple[str, ...]] = ("kafka", "label_store", "redis")
    model_config = SettingsConfigDict(env_prefix="DISTILLERY_ORACLE_GATEWAY_", extra="forbid", validate_default=True)

    port: int = Field(default=50052, ge=0, le=65535)
    metrics_port: int = Field(default=9102, ge=0, le=65535)
    oracles: dict[str, OracleConfig] = Field(
        default_factory=lambda: {"synthetic": OracleConfig(kind="synthetic")},
        description="Configured oracles by name; 'synthetic' is always available.")
    default_oracle: str = Field(default="", description="Oracle when a request names none; empty: the filter's "
                                "oracle.default.")
    cache_url: str = Field(default="", description="Response cache: path, redis://... or 'off'; "
                           "default <state_dir>/oracle_cache.sqlite.")
    redis_prefix: str = Field(default="distillery:oracle:", description="Key prefix for everything in Redis.")
    pricing: dict[str, Price] = Field(default_factory=dict, description="Extra/overriding prices by model id "
                                      "(prefix match: 'gpt-4o-mini' prices 'gpt-4o-mini-2024-07-18').")
    filter_budgets_usd: dict[str, float] = Field(default_factory=dict, description="Total spend cap per filter.")
    job_budget_usd: float = Field(default=0.0, ge=0, description="Default cap per job id; 0 = none.")
    kafka_group: str = Field(default="distillery-oracle-gateway", description="Consumer group of the stage.")
    kafka_topic_prefix: str = Field(default="", description="Namespace prepended to every topic name.")
    kafka_batch: int = Field(default=64, ge=1, description="Records polled (and labelled concurrently) at once.")
    stage_concurrency: int = Field(default=16, ge=1, description="Requests the Kafka stage labels at once.")

    @model_validator(mode="after")
    def _known_default(self) -> OracleGatewaySettings:
        for name in self.oracles:
            identifiers.oracle_name(name, f"oracles.{identifiers.shown(name)}")
        if self.default_oracle:
            identifiers.oracle_name(self.default_oracle, "default_oracle")
        if self.default_oracle and self.default_oracle not in self.oracles and self.default_oracle != "synthetic":
            raise ValueError(f"default_oracle {self.default_oracle!r} is not one of the configured oracles "
                             f"({', '.join(self.oracles)})")
        return self

    def cache_location(self) -> str:
        return self.cache_url or str(Path(self.state_dir) / "oracle_cache.sqlite")

    def all_pricing(self) -> dict[str, Price]:
        return {**DEFAULT_PRICING, **self.pricing}

    def price_for(self, oracle_name: str, model: str) -> Price:
        """The price of a model: the oracle's own, else the longest matching entry of the table."""
        cfg = self.oracles.get(oracle_name)
        if cfg is not None and cfg.price is not None:
            return cfg.price
        if cfg is not None and cfg.kind == "synthetic":
            return Price(input=0, output=0)
        table = self.all_pricing()
        matches = [k for k in table if model == k or model.startswith(k) or model.split("/")[-1].startswith(k)]
        if not matches:
            raise ConfigError(
                f"no price for model {model!r} (oracle {oracle_name!r}); add it under oracle_gateway.pricing or "
                f"set oracles.{oracle_name}.price (input/output USD per 1M tokens; 0 for a local server)")
        return table[max(matches, key=len)]
