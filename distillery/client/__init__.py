"""Client library for the LLM Distillery services (gRPC; needs only grpcio and protobuf, never torch).

Install with ``pip install 'llm-distillery[client]'``. Sync clients here, asyncio twins in
:mod:`distillery.client.aio`; connection settings (TLS/mTLS, token, deadlines, retries, round-robin over a
headless Service) in :class:`ChannelConfig`, defaulting to the ``DISTILLERY_TARGET``/``DISTILLERY_TOKEN``/
``DISTILLERY_TLS_*`` environment. Results are plain dataclasses (:mod:`distillery.client.types`).
"""

from distillery.client.channel import ChannelConfig, RetryPolicy
from distillery.client.errors import ClientError
from distillery.client.sync import OracleClient, PrefilterClient, ScoringClient, TrainerClient
from distillery.client.types import (
    Budget,
    Decision,
    DimensionScore,
    ItemFailure,
    Job,
    Label,
    ModelVersion,
    Score,
)

__all__ = [
    "Budget",
    "ChannelConfig",
    "ClientError",
    "Decision",
    "DimensionScore",
    "ItemFailure",
    "Job",
    "Label",
    "ModelVersion",
    "OracleClient",
    "PrefilterClient",
    "RetryPolicy",
    "Score",
    "ScoringClient",
    "TrainerClient",
]
