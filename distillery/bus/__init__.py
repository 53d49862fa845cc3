"""Kafka plumbing shared by every stage: topics, clients, headers, dead letters, the Stage base class,
and an embedded tansu broker for demos and tests."""

from distillery.bus.broker import BrokerError, EmbeddedBroker, free_port
from distillery.bus.clients import (
    MissingTopicError,
    configure,
    configure_from,
    ensure_topics,
    make_consumer,
    make_producer,
)
from distillery.bus.dlq import OutMessage, dead_letter
from distillery.bus.headers import header, make_headers, new_trace_id
from distillery.bus.stage import Stage
from distillery.bus.topics import TOPICS, dlq

__all__ = [
    "TOPICS", "BrokerError", "EmbeddedBroker", "MissingTopicError", "OutMessage", "Stage", "configure",
    "configure_from", "dead_letter", "dlq", "ensure_topics",
    "free_port", "header", "make_consumer", "make_headers", "make_producer", "new_trace_id",
]
