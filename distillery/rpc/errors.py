"""Map domain errors to gRPC status codes, so that no Python exception ever reaches a client as UNKNOWN."""

from __future__ import annotations

import functools
import inspect
import logging
import uuid

import grpc

from distillery.articles import InvalidArticleError
from distillery.errors import (  # re-exported: servicers import them from here
    BudgetExhaustedError,
    NotFoundError,
    OverloadedError,
    PreconditionError,
    UnavailableError,
)
from distillery.filters import FilterSpecError, UnknownFilterError
from distillery.redact import public
from distillery.v1 import common_pb2

logger = logging.getLogger(__name__)

__all__ = [
    "BudgetExhaustedError",
    "NotFoundError",
    "OverloadedError",
    "PreconditionError",
    "UnavailableError",
    "handle_errors",
    "item_error",
    "status_for",
]


_MAPPING: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (InvalidArticleError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownFilterError, grpc.StatusCode.NOT_FOUND),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (FilterSpecError, grpc.StatusCode.FAILED_PRECONDITION),
    (OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (BudgetExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
]


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message for an exception (never a server path, host or secret:
    such details stay in the log under an incident id the message carries)."""
    for exc_type, code in _MAPPING:
        if isinstance(exc, exc_type):
            return code, public(str(exc))
    incident = uuid.uuid4().hex[:12]
    logger.error("internal error %s", incident, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error (incident {incident}; details in the server log)"


def item_error(exc: BaseException) -> common_pb2.ItemError:
    code, message = status_for(exc)
    return common_pb2.ItemError(code=code.name, message=message)


def handle_errors(method):
    """Decorate a servicer method: domain errors become statuses with clear messages."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream_wrapper(self, request, context):
            try:
                yield from method(self, request, context)
            except Exception as exc:
                if _already_aborted(exc, context):
                    raise
                code, message = status_for(exc)
                context.abort(code, message)

        return stream_wrapper

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except Exception as exc:
            if _already_aborted(exc, context):
                raise
            code, message = status_for(exc)
            context.abort(code, message)

    return wrapper


def _already_aborted(exc: BaseException, context) -> bool:
    """True when the handler already chose a status (``context.abort`` raises a bare ``Exception``)."""
    if isinstance(exc, grpc.RpcError):
        return True
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - older grpcio or a test double without code()
        code = None
    return code is not None and code != grpc.StatusCode.OK
