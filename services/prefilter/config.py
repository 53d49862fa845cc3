"""Settings of the prefilter service (section ``prefilter:``, env ``DISTILLERY_PREFILTER_*``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from distillery.config import ServiceSettings


class PrefilterSettings(ServiceSettings):
    section: ClassVar[str] = "prefilter"
    model_config = SettingsConfigDict(env_prefix="DISTILLERY_PREFILTER_", extra="forbid", validate_default=True)

    port: int = Field(default=50051, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(default=9101, ge=0, le=65535, description="Prometheus /metrics port (0: free one).")
    max_request_articles: int = Field(
        default=1000, ge=1,
        description="Most articles in one Check call; larger batches are refused with INVALID_ARGUMENT "
        "(split them, or use CheckStream).",
    )
    kafka_topic_prefix: str = Field(
        default="", description="Namespace prepended to every topic name (shared brokers, tests)."
    )
    kafka_group: str = Field(default="distillery-prefilter", description="Consumer group of the Kafka stage.")
    kafka_batch: int = Field(
        default=500, ge=1, description="Most messages per poll; larger batches amortise flush+commit round trips."
    )
    detect_language: bool = Field(
        default=True,
        description="Kafka stage: detect and fill in the language of articles that have none (about 0.1 ms "
        "per article; language rules detect it anyway when they need it).",
    )
