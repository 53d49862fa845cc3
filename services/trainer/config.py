"""Trainer settings (section ``trainer:`` of the config file, env prefix ``DISTILLERY_TRAINER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from distillery.config import ServiceSettings


class TrainerSettings(ServiceSettings):
    section: ClassVar[str] = "trainer"
    model_config = SettingsConfigDict(env_prefix="DISTILLERY_TRAINER_", extra="forbid", validate_default=True)

    port: int = Field(default=50053, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(default=9103, ge=0, le=65535, description="Prometheus /metrics port.")
    registry_root: str = Field(
        default="", description="Model registry: a folder or an fsspec URI; empty means <state_dir>/registry."
    )
    label_store_url: str = Field(
        default="", description="Label store URL (SQLite path or postgresql://); empty: <state_dir>/labels.sqlite."
    )
    datasets_dir: str = Field(default="", description="Saved dataset versions; empty: <state_dir>/datasets.")
    embed_cache_dir: str = Field(
        default="", description="Embedding cache of probe students; empty: <state_dir>/embeddings."
    )
    max_concurrent_jobs: int = Field(
        default=1, ge=1, description="Jobs that train at once; each runs in its own process. More jobs queue."
    )
    kafka_bootstrap: str = Field(
        default="", description="Kafka bootstrap servers for models.events on promotion; empty: do not publish."
    )
    models_topic: str = Field(default="models.events", description="Topic of ModelPromoted events.")

    def resolved(self, name: str) -> str:
        value = getattr(self, name)
        if value:
            return value
        defaults = {
            "registry_root": Path(self.state_dir) / "registry",
            "label_store_url": Path(self.state_dir) / "labels.sqlite",
            "datasets_dir": Path(self.state_dir) / "datasets",
            "embed_cache_dir": Path(self.state_dir) / "embeddings",
        }
        return str(defaults[name])

    @property
    def jobs_dir(self) -> Path:
        return Path(self.state_dir) / "jobs"
