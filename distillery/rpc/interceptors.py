"""Server interceptors: RPC latency and outcome metrics, kept out of every handler."""

from __future__ import annotations

import time

import grpc
from prometheus_client import Counter, Histogram

from distillery.roles import Decision, TokenRoles, authorize, describe_need

# Buckets from 0.5 ms to 60 s: unary scoring calls sit at the bottom, training RPCs at the top.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

_METRICS: dict[str, tuple[Histogram, Counter]] = {}


def rpc_metrics(service: str) -> tuple[Histogram, Counter]:
    """``distillery_<service>_rpc_seconds`` and ``distillery_<service>_rpc_requests_total`` (one pair per service)."""
    if service not in _METRICS:
        _METRICS[service] = (
            Histogram(
                f"distillery_{service}_rpc_seconds",
                f"Server-side gRPC handling time of the {service} service, by method.",
                ["method"],
                buckets=LATENCY_BUCKETS,
            ),
            Counter(
                f"distillery_{service}_rpc_requests_total",
                f"gRPC calls handled by the {service} service, by method and status code.",
                ["method", "code"],
            ),
        )
    return _METRICS[service]


def _code_of(context) -> str:
    code = context.code() if hasattr(context, "code") else None
    return code.name if isinstance(code, grpc.StatusCode) else "OK"


class MetricsInterceptor(grpc.ServerInterceptor):
    def __init__(self, service: str):
        self.service = service

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler_call_details.method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        seconds, total = rpc_metrics(self.service)

        def observe(start: float, context, failed: bool) -> None:
            seconds.labels(method).observe(time.perf_counter() - start)
            code = _code_of(context)
            if failed and code == "OK":
                code = "UNKNOWN"
            total.labels(method, code).inc()

        def wrap_unary(fn):
            def inner(request, context):
                start, failed = time.perf_counter(), False
                try:
                    return fn(request, context)
                except BaseException:
                    failed = True
                    raise
                finally:
                    observe(start, context, failed)

            return inner

        def wrap_stream(fn):
            def inner(request, context):
                start, failed = time.perf_counter(), False
                try:
                    yield from fn(request, context)
                except BaseException:
                    failed = True
                    raise
                finally:
                    observe(start, context, failed)

            return inner

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                wrap_unary(handler.unary_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                wrap_stream(handler.unary_stream), handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                wrap_unary(handler.stream_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                wrap_stream(handler.stream_stream), handler.request_deserializer, handler.response_serializer
            )
        return handler


class AuthInterceptor(grpc.ServerInterceptor):
    """Per-method authorization from ``authorization: Bearer <token>`` (distillery.roles).

    Health checks are open (probes carry no token). A call without a known token ends UNAUTHENTICATED, a
    known token without a role the method needs ends PERMISSION_DENIED, both before the servicer runs.
    Tokens are compared in constant time and never logged; the scheme ``Bearer`` is case-insensitive.
    ``tokens`` is a TokenRoles table, or one string: a single all-role token (the ``auth_token`` setting).
    """

    def __init__(self, tokens: TokenRoles | str):
        if isinstance(tokens, str):
            if not tokens:
                raise ValueError("auth token must not be empty")
            tokens = TokenRoles({None: [tokens]})
        if not tokens:
            raise ValueError("auth needs at least one token")
        self._tokens = tokens

    def _decision(self, handler_call_details) -> Decision:
        header = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                header = value
                break
        return authorize(self._tokens, handler_call_details.method, header)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        decision = self._decision(handler_call_details)
        if decision is Decision.ALLOW:
            return handler
        method = handler_call_details.method.lstrip("/")
        if decision is Decision.UNAUTHENTICATED:
            code, message = grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token"
        else:
            code = grpc.StatusCode.PERMISSION_DENIED
            message = f"this token may not call {method}: it needs {describe_need(handler_call_details.method)}"

        def deny(request, context):
            context.abort(code, message)

        args = (handler.request_deserializer, handler.response_serializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(deny, *args)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(deny, *args)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(deny, *args)
        return grpc.stream_stream_rpc_method_handler(deny, *args)
