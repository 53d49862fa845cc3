"""Domain errors shared by the engines: plain Python, no gRPC or Kafka.

Engines raise these; the edges translate them — gRPC servicers to status codes in one place
(:mod:`distillery.rpc.errors`), Kafka stages to dead-letter records, the CLI to messages and exit codes.
"""

from __future__ import annotations


class NotFoundError(LookupError):
    """A named thing (job, model version) does not exist."""


class OverloadedError(RuntimeError):
    """The server's queue is full; the client should retry later (RESOURCE_EXHAUSTED)."""


class BudgetExhaustedError(RuntimeError):
    """A spending budget would be exceeded (RESOURCE_EXHAUSTED)."""


class UnavailableError(RuntimeError):
    """A dependency is down or nothing is loaded yet (UNAVAILABLE / FAILED_PRECONDITION)."""


class PreconditionError(RuntimeError):
    """The request is valid but the system is not in a state to serve it (FAILED_PRECONDITION)."""
