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
    retrain_enabled: bool = Field(
        default=False, description="Train and promote models automatically as labels arrive (active learning).")
    retrain_min_labels: int = Field(
        default=200, ge=1, description="First model: train when no model is promoted and this many non-audit "
                                       "labels exist.")
    retrain_new_labels: int = Field(
        default=200, ge=1, description="Retrain when this many non-audit labels arrived since the promoted "
                                       "model's dataset.")
    retrain_poll_seconds: float = Field(default=60.0, gt=0, description="How often the label counts are checked.")
    retrain_kind: str = Field(default="", description="Student kind of automatic jobs; empty: the spec's default.")
    retrain_params: dict[str, str] = Field(default_factory=dict,
                                           description="Parameters of automatic jobs (as StartJob params).")
    retrain_promote_tolerance: float = Field(
        default=0.0, ge=0, description="Promote a retrained model when its frozen-test MAE is below the promoted "
                                       "model's, or at most this much above it.")

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
