"""``python -m distillery_services.inference``: the scoring service (gRPC; Kafka stage when a bootstrap is set)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from distillery_services.inference.config import InferenceSettings

from distillery.rpc import ServiceBinding
from distillery.rpc.main import Service, common_parser, service_main
from distillery.v1 import scoring_pb2_grpc

logger = logging.getLogger(__name__)


def build(settings: InferenceSettings, catalog) -> Service:
    from distillery_services.inference.engine import BatchLimits, ScoringEngine
    from distillery_services.inference.registry_source import RegistrySource
    from distillery_services.inference.reload import RegistryWatcher
    from distillery_services.inference.servicer import ScoringServicer

    from distillery.students.ngrams import set_featurise_threads

    if settings.backend == "vllm":
        from distillery_services.inference.backends.vllm_backend import vllm_available

        ok, why = vllm_available()
        if not ok:
            raise ValueError(f"backend vllm cannot run here: {why}; choose --backend torch or onnx")
    # cpu_threads also bounds the lexical featuriser's threads (0: one per CPU the process may use)
    set_featurise_threads(settings.cpu_threads or None)
    source = RegistrySource(
        settings.resolved_registry(), backend=settings.backend, device=settings.device,
        quantize=settings.quantize, onnx_dir=settings.resolved_onnx_dir(),
        max_batch_tokens=settings.max_batch_tokens, threads=settings.cpu_threads, cascade=settings.cascade,
        dtype=settings.dtype, int8_max_drift=settings.int8_max_drift,
        cache_dir=Path(settings.state_dir) / "registry-cache",
    )
    limits = BatchLimits(settings.max_batch_size, settings.max_batch_tokens, settings.max_wait_ms / 1000.0,
                         settings.max_queue)
    engine = ScoringEngine(catalog.latest(), source, limits, cascade=settings.cascade)
    loaded = engine.refresh()
    logger.info("models loaded at start", extra={"fields": {"served": engine.served(), "swaps": len(loaded)}})
    watcher = RegistryWatcher(engine, settings.reload_poll_seconds)
    servicer = ScoringServicer(engine, settings.max_text_bytes, settings.max_request_articles)
    stage_holder: list = []

    def on_start(server) -> None:
        from distillery_services.inference.http_api import serve_http

        watcher.start()
        http = serve_http(settings, engine, server)  # HTTP/JSON next to gRPC: same engine, tokens and TLS
        if http is not None:
            stage_holder.append(http)
        if settings.kafka_bootstrap:
            from distillery_services.inference.stage import InferenceStage

            stage = InferenceStage(settings, engine, on_model_event=lambda _f: watcher.trigger())
            stage.start()
            stage_holder.append(stage)

    def on_stop() -> None:
        for stage in stage_holder:
            stage.stop()
        watcher.stop()
        engine.close()

    return Service(
        [ServiceBinding(scoring_pb2_grpc.add_ScoringServiceServicer_to_server, servicer,
                        "distillery.v1.ScoringService")],
        on_start=on_start, on_stop=on_stop,
    )


def parser():
    p = common_parser("inference", "Run the inference (scoring) service")
    p.add_argument("--registry", "--registry-dir", dest="registry_uri",
                   help="model registry: a folder or an fsspec URI such as s3://bucket/models (default <state-dir>/registry)")
    p.add_argument("--backend", choices=["torch", "onnx", "openvino", "vllm"], help="encoder runtime")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], help="torch/openvino precision")
    p.add_argument("--int8", action="store_true", default=None, help="int8 encoder (onnx, openvino)")
    p.add_argument("--onnx-quantize", action="store_true", default=None, help="int8 dynamic quantisation")
    p.add_argument("--int8-max-drift", type=float, help="largest int8-vs-fp32 score drift served (default 0.02)")
    p.add_argument("--http-port", type=int, help="HTTP/JSON scoring port (0: a free one, -1: off; default 8054)")
    p.add_argument("--max-batch-size", type=int, help="most articles per forward pass")
    p.add_argument("--max-batch-tokens", type=int, help="most tokens per forward pass")
    p.add_argument("--max-wait-ms", type=float, help="how long a batch waits to fill")
    p.add_argument("--max-queue", type=int, help="queued articles per model before RESOURCE_EXHAUSTED")
    p.add_argument("--reload-poll-seconds", type=float, help="registry poll interval (0: off)")
    p.add_argument("--cascade", action=argparse.BooleanOptionalAction, default=None,
                   help="run a filter's cascade (cheap student first) when its spec sets a threshold")
    p.add_argument("--kafka-bootstrap", help="Kafka bootstrap servers (enables the stage)")
    p.add_argument("--workers", type=int, help="gRPC handler threads")
    p.add_argument("--cpu-threads", type=int,
                   help="intra-op threads of torch / ONNX Runtime, and of the lexical featuriser (default: one per CPU)")
    return p


def main(argv=None) -> int:
    return service_main("inference", InferenceSettings, build, argv, parser=parser())


if __name__ == "__main__":
    sys.exit(main())
