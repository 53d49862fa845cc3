"""``python -m distillery_services.prefilter``: the prefilter service (gRPC; the Kafka stage when a bootstrap is set)."""

from __future__ import annotations

import logging
import sys

from distillery_services.prefilter.config import PrefilterSettings

from distillery.rpc import ServiceBinding
from distillery.rpc.main import Service, common_parser, service_main
from distillery.v1 import prefilter_pb2_grpc

logger = logging.getLogger(__name__)


def build(settings: PrefilterSettings, catalog) -> Service:
    from distillery_services.prefilter.engine import PrefilterEngine
    from distillery_services.prefilter.servicer import PrefilterServicer

    # Every loaded version is served (clients may ask for name/vN); version 0 means the newest.
    engine = PrefilterEngine(catalog.specs[key] for key in sorted(catalog.specs))
    logger.info("prefilter rules compiled", extra={"fields": {"filters": [f"{n}/v{v}" for n, v in engine.refs()]}})
    servicer = PrefilterServicer(engine, settings.max_text_bytes, settings.max_request_articles)
    stages: list = []

    def on_start(_server) -> None:
        if settings.kafka_bootstrap:
            from distillery_services.prefilter.stage import PrefilterStage

            stage = PrefilterStage(settings, engine)
            stage.start()
            stages.append(stage)

    def on_stop() -> None:
        for stage in stages:
            stage.stop()

    return Service(
        [ServiceBinding(prefilter_pb2_grpc.add_PrefilterServiceServicer_to_server, servicer,
                        "distillery.v1.PrefilterService")],
        on_start=on_start,
        on_stop=on_stop,
    )


def parser():
    p = common_parser("prefilter", "Run the prefilter service (declarative rules before any oracle or model)")
    p.add_argument("--max-request-articles", type=int, help="most articles in one Check call")
    p.add_argument("--kafka-bootstrap", help="Kafka bootstrap servers (enables the articles.raw stage)")
    p.add_argument("--kafka-group", help="consumer group of the stage")
    p.add_argument("--kafka-topic-prefix", help="namespace prepended to every topic name")
    p.add_argument("--kafka-batch", type=int, help="most messages per poll")
    p.add_argument("--workers", type=int, help="gRPC handler threads")
    return p


def main(argv=None) -> int:
    return service_main("prefilter", PrefilterSettings, build, argv, parser=parser())


if __name__ == "__main__":
    sys.exit(main())
