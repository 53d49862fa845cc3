"""``python -m services.trainer``: the trainer gRPC service."""

from __future__ import annotations

import sys

from distillery.rpc.main import Service, service_main
from distillery.rpc.server import ServiceBinding
from distillery.v1 import trainer_pb2_grpc
from services.trainer.config import TrainerSettings


def build(settings: TrainerSettings, catalog) -> Service:
    from services.trainer.servicer import TrainerServicer

    servicer = TrainerServicer(settings, catalog)
    binding = ServiceBinding(trainer_pb2_grpc.add_TrainerServiceServicer_to_server, servicer,
                             "distillery.v1.TrainerService")
    return Service([binding], on_stop=servicer.close)


def main(argv=None) -> int:
    return service_main("trainer", TrainerSettings, build, argv)


if __name__ == "__main__":
    sys.exit(main())
