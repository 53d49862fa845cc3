"""``python -m distillery_services.oracle_gateway``: serve OracleService (and the Kafka stage when configured)."""

from __future__ import annotations

import sys

from distillery_services.oracle_gateway.config import OracleGatewaySettings

from distillery.filters import FilterCatalog
from distillery.rpc.main import Service, common_parser, service_main
from distillery.rpc.server import ServiceBinding
from distillery.v1 import oracle_pb2_grpc


def build(settings: OracleGatewaySettings, catalog: FilterCatalog) -> Service:
    from distillery_services.oracle_gateway.engine import OracleEngine
    from distillery_services.oracle_gateway.servicer import OracleServicer

    engine = OracleEngine(settings, catalog)
    servicer = OracleServicer(engine, stream_concurrency=settings.stage_concurrency)
    stage_holder: list = []

    def on_start(_server) -> None:
        if settings.kafka_bootstrap:
            from distillery_services.oracle_gateway.stage import OracleStage

            stage = OracleStage(engine, settings)
            stage.start()
            stage_holder.append(stage)

    def on_stop() -> None:
        for stage in stage_holder:
            stage.stop()
        servicer.close()
        engine.close()

    binding = ServiceBinding(oracle_pb2_grpc.add_OracleServiceServicer_to_server, servicer,
                             "distillery.v1.OracleService")
    return Service([binding], on_start=on_start, on_stop=on_stop)


def main(argv=None) -> int:
    parser = common_parser("oracle", "Run the oracle gateway (LLM labelling with limits, cache, costs)")
    parser.add_argument("--label-store", "--label-store-url", dest="label_store_url", help="path, sqlite:///path or postgresql://... (default <state>/labels.sqlite)")
    parser.add_argument("--cache-url", help="response cache: path, redis://... or off")
    parser.add_argument("--redis-url", help="share rate limits and budgets across replicas")
    parser.add_argument("--default-oracle", help="oracle used when a request names none")
    parser.add_argument("--kafka-bootstrap", help="run the oracle.requests -> oracle.labels stage on this broker")
    parser.add_argument("--kafka-topic-prefix", help="namespace prepended to topic names")
    parser.add_argument("--kafka-group", help="consumer group of the stage")
    return service_main("oracle", OracleGatewaySettings, build, argv, parser=parser)


if __name__ == "__main__":
    sys.exit(main())
