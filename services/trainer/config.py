"""Trainer settings (section ``trainer:`` of the config file, env prefix ``DISTILLERY_TRAINER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from distillery.config import ServiceSettings


class TrainerSettings(ServiceSettings):
    section: ClassVar[str] = "trainer"
    dependencies: ClassVar[tuple[str, ...]] = ("kafka", "label_store", "registry")
    model_config = SettingsConfigDict(env_prefix="DISTILLERY_TRAINER_", extra="forbid", validate_default=True)

    port: int = Field(default=50053, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(default=9103, ge=0, le=65535, description="Prometheus /metrics port.")
    datasets_dir: str = Field(default="", description="Saved dataset versions; empty: <state_dir>/datasets.")
    data_root: str = Field(
        default="", description="The only folder StartJob may read labels files from (DatasetRef.data_path, "
                                "relative to it); anything outside is refused. Empty: <state_dir>/data.")
    embed_cache_dir: str = Field(
        default="", description="Embedding cache of probe students; empty: <state_dir>/embeddings."
    )
    max_concurrent_jobs: int = Field(
        default=1, ge=1, description="Jobs that train at once; each runs in its own process. More jobs queue."
    )
    models_topic: str = Field(default="models.events", description="Topic of ModelPromoted events.")
    export_consumer_lag: bool = Field(
        default=False, description="Export the stages' consumer lag read from the broker on /metrics "
        "(distillery_trainer_consumer_group_lag_messages; groups: the lag_exporter section). One exporter per "
        "deployment: the chart turns it on here, in the single trainer replica.")
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
        if name in ("registry_uri", "registry_root"):
            return self.resolved_registry()
        if name == "label_store_url":
            return self.resolved_label_store()
        value = getattr(self, name)
        if value:
            return value
        defaults = {
            "datasets_dir": Path(self.state_dir) / "datasets",
            "data_root": Path(self.state_dir) / "data",
            "embed_cache_dir": Path(self.state_dir) / "embeddings",
        }
        return str(defaults[name])

    @property
    def jobs_dir(self) -> Path:
        return Path(self.state_dir) / "jobs"
