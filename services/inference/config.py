"""Settings of the inference service (section ``inference:``, env ``DISTILLERY_INFERENCE_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict
from typing_extensions import Self

from distillery.config import ServiceSettings


class InferenceSettings(ServiceSettings):
    section: ClassVar[str] = "inference"
    dependencies: ClassVar[tuple[str, ...]] = ("kafka", "registry")
    model_config = SettingsConfigDict(env_prefix="DISTILLERY_INFERENCE_", extra="forbid", validate_default=True)

    port: int = Field(default=50054, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(default=9104, ge=0, le=65535, description="Prometheus /metrics port (0: free one).")
    http_port: int = Field(
        default=8054, ge=-1, le=65535,
        description="HTTP/JSON scoring port (POST /v1/score, /v1/score:batch, GET /v1/models, /openapi.json); same "
        "tokens, TLS and batching as gRPC. 0 picks a free one, -1 turns it off.",
    )
    workers: int = Field(default=16, ge=1, description="gRPC handler threads (they mostly wait on the batcher).")

    backend: Literal["torch", "onnx", "openvino", "vllm"] = Field(
        default="torch",
        description="Runtime for encoder students: torch (CPU/CUDA), onnx (ONNX Runtime CPU), openvino (OpenVINO "
        "CPU: fused attention in bf16, the fastest here), vllm (decoder students on GPU).",
    )
    device: str = Field(default="auto", description="torch device: auto, cpu, cuda, cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="torch weights dtype / openvino inference precision: auto = bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX, "
        "~1.7x faster than fp32 there, embeddings within ~0.003), fp32 on other CPUs.",
    )
    onnx_quantize: bool = Field(
        default=False,
        description="Dynamic int8 quantisation of the ONNX encoder's weight products: ~2x fp32 ONNX on CPUs with "
        "AVX512-VNNI. Served per probe only if its scores stay within 0.02 MAE of fp32 on probe texts, else fp32.",
    )
    int8: bool = Field(
        default=False,
        description="int8 encoder: onnx = dynamic quantisation of the weight products, openvino = NNCF static "
        "quantisation (SmoothQuant) calibrated on the model version's held-out articles (else the filter's "
        "synthetic texts). Served only within int8_max_drift, checked on other held-out articles.",
    )
    int8_max_drift: float = Field(
        default=0.02, gt=0, le=10,
        description="Largest mean |int8 - unquantised| score difference (0-10 scale, the probe's own head, held-out "
        "articles) at which the int8 encoder is served. With real calibration texts openvino int8 measured 0.018, "
        "ONNX int8 0.027; drift this size is noise, not bias (docs/operations.md).",
    )
    onnx_cache_dir: Path | None = Field(
        default=None, description="Where exported ONNX encoders are cached; default <state_dir>/onnx."
    )
    cpu_threads: int = Field(default=0, ge=0, description=(
        "Intra-op threads for torch/onnx, and the lexical featuriser's threads (0: the library default; for the "
        "featuriser one per usable CPU)."))

    max_batch_size: int = Field(
        default=64, ge=1, description="Most articles in one forward pass. Larger: more throughput, more latency."
    )
    max_batch_tokens: int = Field(
        default=16384, ge=1,
        description="Most (estimated) tokens in one forward pass; bounds memory and the latency of one batch.",
    )
    max_wait_ms: float = Field(
        default=2.0, ge=0,
        description="How long the batcher waits for more requests to fill a batch once it holds one item. "
        "0 minimises latency at low load; a few ms merges concurrent requests.",
    )
    max_queue: int = Field(
        default=4096, ge=1,
        description="Articles waiting per model before new requests get RESOURCE_EXHAUSTED (backpressure).",
    )
    max_request_articles: int = Field(default=2048, ge=1, description="Most articles in one ScoreBatch request.")
    reload_poll_seconds: float = Field(
        default=2.0, ge=0, description="How often the registry's promoted pointers are polled (0: never)."
    )
    cascade: bool = Field(
        default=True, description="Use a filter's cascade (cheap student first) when its spec sets a threshold."
    )

    candidates_topic: str = Field(default="articles.candidates", description="Input topic of the stage.")
    scored_topic: str = Field(default="articles.scored", description="Output topic of the stage.")
    oracle_requests_topic: str = Field(default="oracle.requests", description="Where uncertain/audit go.")
    models_events_topic: str = Field(default="models.events", description="Promotions that trigger a reload.")
    consumer_group: str = Field(default="inference", description="Kafka consumer group of the stage.")
    uncertain_daily_budget: int = Field(
        default=500, ge=0, description="Per-filter daily cap of uncertain articles sent to the oracle."
    )
    audit_rate: float = Field(
        default=0.01, ge=0, le=1,
        description="Share of scored (article, filter) pairs sent to the oracle for accuracy audits.",
    )
    audit_seed: str = Field(default="audit", description="Salt of the deterministic audit sample.")
    audit_tracking: bool = Field(
        default=True,
        description="Remember predictions sent to the oracle (audit/uncertain) and match them with oracle.labels "
        "to export the live student-vs-oracle MAE and interval coverage.",
    )
    oracle_labels_topic: str = Field(default="oracle.labels", description="Where the audit matcher reads labels.")
    audit_store_max: int = Field(
        default=20000, ge=1, description="Most predictions remembered while waiting for their label (LRU)."
    )
    audit_store_ttl_seconds: float = Field(
        default=172800.0, gt=0, description="How long a prediction waits for its label before it is forgotten."
    )
    audit_window: int = Field(
        default=200, ge=1, description="Audit labels in the sliding MAE window, per filter and dimension."
    )

    @model_validator(mode="after")
    def _options_match_backend(self) -> Self:
        if self.onnx_quantize and self.backend != "onnx":
            raise ValueError(f"onnx_quantize needs backend onnx (backend is {self.backend}); the torch backend "
                             "takes dtype float32 or bfloat16 instead")
        if self.int8 and self.backend not in ("onnx", "openvino"):
            raise ValueError(f"int8 needs backend onnx or openvino (backend is {self.backend}); the torch backend "
                             "takes dtype float32 or bfloat16 instead")
        if self.dtype != "auto" and self.backend not in ("torch", "openvino"):
            raise ValueError(f"dtype {self.dtype} applies to the torch and openvino backends only (backend is "
                             f"{self.backend}); the onnx backend runs fp32, or int8 with onnx_quantize")
        return self

    @property
    def quantize(self) -> bool:
        """int8 encoders asked for (``int8``, or ``onnx_quantize`` of earlier configurations)."""
        return self.int8 or self.onnx_quantize

    def resolved_onnx_dir(self) -> Path:
        return Path(self.onnx_cache_dir) if self.onnx_cache_dir else Path(self.state_dir) / "onnx"
