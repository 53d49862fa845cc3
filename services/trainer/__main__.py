"""``python -m distillery_services.trainer``: the trainer gRPC service."""

from __future__ import annotations

import sys

from distillery_services.trainer.config import TrainerSettings

from distillery.rpc.main import Service, service_main
from distillery.rpc.server import ServiceBinding
from distillery.v1 import trainer_pb2_grpc


def build(settings: TrainerSettings, catalog) -> Service:
    from distillery_services.trainer.servicer import TrainerServicer

    servicer = TrainerServicer(settings, catalog)
    binding = ServiceBinding(trainer_pb2_grpc.add_TrainerServiceServicer_to_server, servicer,
                             "distillery.v1.TrainerService")
    exporters: list = []

    def on_start(_server) -> None:
        if settings.export_consumer_lag and settings.kafka_bootstrap:
            from distillery.bus.lag import LagExporter, LagExporterSettings

            # the exporter reads the broker the trainer is configured with (the chart sets only the trainer's
            # DISTILLERY_TRAINER_KAFKA_* variables; loaded on its own, the exporter had no bootstrap)
            kafka = {k: v for k, v in settings.model_dump().items()
                     if k.startswith("kafka_") and k in LagExporterSettings.model_fields}
            exporters.append(LagExporter(LagExporterSettings.load(**kafka)).start())

    def on_stop() -> None:
        for exporter in exporters:
            exporter.stop()
        servicer.close()

    return Service([binding], on_start=on_start, on_stop=on_stop)


def main(argv=None) -> int:
    return service_main("trainer", TrainerSettings, build, argv)


if __name__ == "__main__":
    sys.exit(main())
