"""A client of the inference Service, run inside its own host: ``grpc_client.py NAME:PORT TOKEN FILTER CALLS``.

It resolves the Service name (every pod address of a headless Service) and balances calls round-robin,
which is how a gRPC client spreads load over replicas (one HTTP/2 connection would otherwise pin one pod).
Exits non-zero when a call fails.
"""

from __future__ import annotations

import sys

import grpc

from distillery.v1 import article_pb2, common_pb2, scoring_pb2, scoring_pb2_grpc


def main(target: str, token: str, filter_name: str, calls: int) -> int:
    channel = grpc.insecure_channel(f"dns:///{target}",
                                    options=[("grpc.lb_policy_name", "round_robin")])
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    metadata = [("authorization", f"Bearer {token}")]
    for i in range(calls):
        article = article_pb2.Article(id=f"grpc-client-{i}", title="Volunteers rebuild a flooded library",
                                     text="Neighbours gathered to restore books and shelves after the flood. " * 3)
        request = scoring_pb2.ScoreRequest(article=article, filters=[common_pb2.FilterRef(name=filter_name)])
        stub.Score(request, metadata=metadata, timeout=30, wait_for_ready=True)
    channel.close()
    print(f"{calls} calls answered")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
