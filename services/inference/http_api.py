"""HTTP/JSON scoring next to gRPC: the same engine (and its batcher), the same tokens, the same error codes.

    POST /v1/score        {"article": {...}, "filters": ["uplifting"]}        -> {"article_id", "results"}
    POST /v1/score:batch  {"articles": [{...}, ...], "filters": [...]}         -> {"responses": [...]}
    GET  /v1/models                                                            -> {"models": [...]}
    GET  /openapi.json    the OpenAPI 3.1 document of all of the above

Errors are ``{"error": {"code": "<gRPC status name>", "message": "..."}}`` with the HTTP status Google's API
design maps that code to (INVALID_ARGUMENT 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404,
FAILED_PRECONDITION 400, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, INTERNAL 500).
A small Starlette app served by uvicorn in a thread of the inference process; handlers are plain functions
that Starlette runs in its thread pool, since engine.score blocks on the batcher.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from distillery_services.inference.batcher import DeadlineExceededError
from distillery_services.inference.engine import FilterResult, ScoringEngine

from distillery.articles import Article, InvalidArticleError, validate
from distillery.identifiers import FILTER_NAME_PATTERN, check_filter_refs
from distillery.messages import article_of
from distillery.v1 import article_pb2, common_pb2

logger = logging.getLogger(__name__)

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499, "INTERNAL": 500, "UNKNOWN": 500, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
# The gRPC method whose authorization each route shares (one role table for both protocols).
ROUTE_METHODS = {
    "/v1/score": "/distillery.v1.ScoringService/Score",
    "/v1/score:batch": "/distillery.v1.ScoringService/ScoreBatch",
    "/v1/models": "/distillery.v1.ScoringService/ListModels",
}
_ARTICLE_FIELDS = ("id", "title", "text", "url", "source", "source_type", "language", "published_at")
FILTER_PATTERN = rf"^{FILTER_NAME_PATTERN}(/v[0-9]{{1,4}})?$"  # versions 1..9999 (0: newest), as gRPC checks
MAX_FIELD_CHARS = 2048  # every article field but text (bounded by max_text_bytes)


class ApiError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _filters(value: Any) -> list[common_pb2.FilterRef]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError("INVALID_ARGUMENT", "filters must be a list of strings such as \"uplifting\" or "
                       "\"uplifting/v1\"")
    refs = []
    for v in value:
        name, _, version = v.partition("/")
        if version and not (version.startswith("v") and version[1:].isdigit()):
            raise ApiError("INVALID_ARGUMENT", f"filter {v!r}: expected name or name/vN")
        refs.append(common_pb2.FilterRef(name=name, version=int(version[1:] or 0) if version else 0))
    return refs


def _article(value: Any, where: str, max_text_bytes: int) -> Article:
    if not isinstance(value, dict):
        raise ApiError("INVALID_ARGUMENT", f"{where} must be a JSON object with title and text")
    unknown = sorted(set(value) - set(_ARTICLE_FIELDS) - {"metadata"})
    if unknown:
        raise ApiError("INVALID_ARGUMENT", f"{where}: unknown field(s) {', '.join(unknown)}")
    fields = {}
    for key in _ARTICLE_FIELDS:
        v = value.get(key)
        if v is None:
            continue
        if not isinstance(v, str):
            raise ApiError("INVALID_ARGUMENT", f"{where}.{key} must be a string")
        if key != "text" and len(v) > MAX_FIELD_CHARS:
            raise ApiError("INVALID_ARGUMENT", f"{where}.{key} is {len(v):,} characters, over {MAX_FIELD_CHARS:,}")
        fields[key] = v
    meta = value.get("metadata") or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ApiError("INVALID_ARGUMENT", f"{where}.metadata must map strings to strings")
    try:
        # Through the message first: protobuf refuses what the gRPC edge would (a lone surrogate, say).
        return validate(article_of(article_pb2.Article(**fields, metadata=meta)), max_text_bytes)
    except InvalidArticleError as exc:
        raise ApiError("INVALID_ARGUMENT", f"{where}: {exc}") from None
    except ValueError as exc:  # e.g. a lone surrogate protobuf refuses
        raise ApiError("INVALID_ARGUMENT", f"{where}: {exc}") from None


def result_json(r: FilterResult) -> dict:
    spread = r.spread.tolist() if r.spread is not None else [0.0] * len(r.dimensions)
    dims = {
        n: {"score": float(c), "lower": float(lo), "upper": float(hi), "raw": float(raw), "spread": float(sd)}
        for n, raw, c, lo, hi, sd in zip(r.dimensions, r.raw.tolist(), r.calibrated.tolist(), r.lower.tolist(),
                                         r.upper.tolist(), spread, strict=True)
    }
    return {
        "filter": r.filter_name, "filter_version": r.filter_version, "overall": float(r.overall), "tier": r.tier,
        "uncertain": bool(r.uncertain), "model_version": r.model_version, "stage": r.stage,
        "dimensions": dims, "gatekeepers_applied": list(r.gatekeepers_applied),
        "timings": {"queue_seconds": r.queue_seconds, "inference_seconds": r.inference_seconds,
                    "total_seconds": r.total_seconds},
    }


class ScoringHttpApi:
    """The routes' logic (framework-free: JSON in, JSON out, ApiError for failures)."""

    def __init__(self, engine: ScoringEngine, max_text_bytes: int, max_request_articles: int):
        self.engine = engine
        self.max_text_bytes = max_text_bytes
        self.max_request_articles = max_request_articles

    def _score(self, articles: list[Article], filters: list, deadline: float | None) -> list[dict]:
        check_filter_refs(filters)
        slots = self.engine.resolve([(f.name, f.version) for f in filters])
        try:
            per_article = self.engine.score(articles, slots, deadline)
        except DeadlineExceededError as exc:
            raise ApiError("DEADLINE_EXCEEDED", str(exc)) from None
        return [{"article_id": a.id, "results": [result_json(r) for r in results]}
                for a, results in zip(articles, per_article, strict=True)]

    @staticmethod
    def _object(body: Any) -> dict:
        if not isinstance(body, dict):
            raise ApiError("INVALID_ARGUMENT", "the request body must be a JSON object")
        return body

    def score(self, body: Any, deadline: float | None = None) -> dict:
        body = self._object(body)
        unknown = sorted(set(body) - {"article", "filters"})
        if unknown:
            raise ApiError("INVALID_ARGUMENT", f"unknown field(s) {', '.join(unknown)}; expected article, filters")
        if "article" not in body:
            raise ApiError("INVALID_ARGUMENT", "article is missing: send {\"article\": {\"title\": ..., \"text\": ...}}")
        article = _article(body["article"], "article", self.max_text_bytes)
        return self._score([article], _filters(body.get("filters")), deadline)[0]

    def score_batch(self, body: Any, deadline: float | None = None) -> dict:
        body = self._object(body)
        unknown = sorted(set(body) - {"articles", "filters"})
        if unknown:
            raise ApiError("INVALID_ARGUMENT", f"unknown field(s) {', '.join(unknown)}; expected articles, filters")
        items = body.get("articles")
        if not isinstance(items, list) or not items:
            raise ApiError("INVALID_ARGUMENT", "articles must be a non-empty list of articles")
        if len(items) > self.max_request_articles:
            raise ApiError("INVALID_ARGUMENT", f"{len(items)} articles in one request, over the limit of "
                           f"{self.max_request_articles}; split the batch")
        articles = [_article(a, f"articles[{i}]", self.max_text_bytes) for i, a in enumerate(items)]
        return {"responses": self._score(articles, _filters(body.get("filters")), deadline)}

    def models(self) -> dict:
        out = []
        for name, slot in sorted(self.engine.slots.items()):
            out.append({"filter": name, "filter_version": slot.spec.version,
                        "dimensions": list(slot.spec.dimension_names),
                        "versions": {role: ref.version for role, ref in slot.refs.items()}})
        return {"models": out}


def openapi(max_request_articles: int, max_text_chars: int) -> dict:
    """The OpenAPI 3.1 document (hand-written so that it is exactly what the handlers accept)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "LLM Distillery scoring API", "version": "1",
                 "description": "Scores articles with the promoted students (the same engine and batching as the "
                                "gRPC ScoringService). Auth: `Authorization: Bearer <token>` when the service has "
                                "tokens (scoring or admin role)."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(max_request_articles, max_text_chars),
        },
        "security": [{"bearer": []}, {}],
        "paths": _paths(),
    }


def _schemas(max_request_articles: int, max_text_chars: int) -> dict:
    """``components.schemas``: requests, responses and errors."""
    filters = {"type": "array", "maxItems": 64, "items": {"type": "string", "pattern": FILTER_PATTERN},
               "description": "Filters to score for (name or name/vN); empty or absent: every served filter."}
    score_response = {"type": "object", "required": ["article_id", "results"],
                      "properties": {"article_id": {"type": "string"},
                                     "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}}}}
    error = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string", "enum": sorted(HTTP_STATUS)}, "message": {"type": "string"}}}}}
    return {
        "Article": _article_schema(max_text_chars), "Result": _result_schema(), "ScoreResponse": score_response,
        "Error": error,
        "ScoreRequest": {"type": "object", "additionalProperties": False, "required": ["article"],
                         "properties": {"article": {"$ref": "#/components/schemas/Article"},
                                        "filters": filters}},
        "ScoreBatchRequest": {"type": "object", "additionalProperties": False, "required": ["articles"],
                              "properties": {"articles": {"type": "array", "minItems": 1,
                                                          "maxItems": max_request_articles,
                                                          "items": {"$ref": "#/components/schemas/Article"}},
                                             "filters": filters}},
        "ScoreBatchResponse": {"type": "object", "required": ["responses"], "properties": {"responses": {
            "type": "array", "items": {"$ref": "#/components/schemas/ScoreResponse"}}}},
        "Models": {"type": "object", "required": ["models"], "properties": {"models": {"type": "array",
                   "items": {"type": "object", "required": ["filter", "filter_version", "versions"],
                             "properties": {"filter": {"type": "string"}, "filter_version": {"type": "integer"},
                                            "dimensions": {"type": "array", "items": {"type": "string"}},
                                            "versions": {"type": "object",
                                                         "additionalProperties": {"type": "string"}}}}}}},
    }


def _article_schema(max_text_chars: int) -> dict:
    string = {"type": "string", "maxLength": MAX_FIELD_CHARS}
    return {
        "type": "object", "additionalProperties": False, "required": ["title", "text"],
        "properties": {
            "id": {**string, "description": "Stable id; derived from url/title/text when empty."},
            "title": {"type": "string", "minLength": 1, "maxLength": MAX_FIELD_CHARS, "pattern": r"\S"},
            "text": {"type": "string", "minLength": 1, "maxLength": max_text_chars, "pattern": r"\S"},
            "url": string, "source": string, "source_type": string, "language": string, "published_at": string,
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }


def _result_schema() -> dict:
    number = {"type": "number"}
    return {
        "type": "object",
        "required": ["filter", "filter_version", "overall", "tier", "uncertain", "model_version", "stage",
                     "dimensions", "gatekeepers_applied", "timings"],
        "properties": {
            "filter": {"type": "string"}, "filter_version": {"type": "integer"}, "overall": number,
            "tier": {"type": "string"}, "uncertain": {"type": "boolean"}, "model_version": {"type": "string"},
            "stage": {"type": "string", "enum": ["single", "cheap", "expensive"]},
            "dimensions": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["score", "lower", "upper", "raw", "spread"],
                "properties": {k: number for k in ("score", "lower", "upper", "raw", "spread")}}},
            "gatekeepers_applied": {"type": "array", "items": {"type": "string"}},
            "timings": {"type": "object", "properties": {k: number for k in ("queue_seconds", "inference_seconds",
                                                                              "total_seconds")}},
        },
    }


def _error_responses(*statuses: int) -> dict:
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {str(s): {"description": desc, **ref} for s, desc in (
        (400, "Invalid request (INVALID_ARGUMENT) or no model promoted for a filter (FAILED_PRECONDITION)"),
        (401, "Missing or unknown bearer token"), (403, "The token lacks the role"),
        (404, "Unknown filter"), (413, "Request body too large"), (429, "Overloaded: retry with backoff"),
        (500, "Internal error (incident id in the message)"), (503, "No model loaded yet, or shutting down"),
        (504, "The deadline passed before the batch ran")) if s in statuses}


def _paths() -> dict:
    common_errors = _error_responses(400, 401, 403, 404, 413, 429, 500, 503, 504)
    json_body = lambda ref: {"required": True, "content": {"application/json": {"schema": {"$ref": ref}}}}
    ok = lambda ref, desc: {"description": desc, "content": {"application/json": {"schema": {"$ref": ref}}}}
    return {
        "/v1/score": {"post": {"operationId": "score", "summary": "Score one article",
                               "requestBody": json_body("#/components/schemas/ScoreRequest"),
                               "responses": {"200": ok("#/components/schemas/ScoreResponse", "Scores per filter"),
                                             **common_errors}}},
        "/v1/score:batch": {"post": {"operationId": "scoreBatch", "summary": "Score several articles",
                                     "requestBody": json_body("#/components/schemas/ScoreBatchRequest"),
                                     "responses": {"200": ok("#/components/schemas/ScoreBatchResponse",
                                                             "One response per article, in order"),
                                                   **common_errors}}},
        "/v1/models": {"get": {"operationId": "listModels", "summary": "Filters served and their model versions",
                               "responses": {"200": ok("#/components/schemas/Models", "Served models"),
                                             **_error_responses(401, 403, 500)}}},
    }


def build_app(api: ScoringHttpApi, authorize: Callable[[str, str | None], str | None] | None = None,
              max_body_bytes: int = 64 * 1024 * 1024, on_request: Callable[[str, str, float], None] | None = None):
    """The Starlette app. ``authorize(grpc_method, authorization_header)`` returns None to allow, else the gRPC
    code name (UNAUTHENTICATED / PERMISSION_DENIED) to refuse with."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    spec_text = json.dumps(openapi(api.max_request_articles, api.max_text_bytes))

    def guarded(route: str, handler: Callable[[Any, float | None], dict], needs_body: bool):
        # A bound method: Starlette wraps functions and methods as request handlers (an object would be an ASGI app).
        return _Endpoint(route, handler, needs_body, authorize, max_body_bytes, on_request).endpoint

    async def openapi_doc(_request: Request) -> Response:
        return Response(spec_text, media_type="application/json")

    async def not_found(request: Request, _exc) -> Response:
        return _reply("NOT_FOUND", f"no route {request.method} {request.url.path}; see /openapi.json")

    async def bad_method(request: Request, exc) -> Response:
        return JSONResponse(_error_body("INVALID_ARGUMENT", f"{request.method} is not allowed on {request.url.path}"),
                            status_code=405, headers=getattr(exc, "headers", None))  # with Allow (RFC 9110)

    routes = [
        Route("/v1/score", guarded("/v1/score", api.score, True), methods=["POST"]),
        Route("/v1/score:batch", guarded("/v1/score:batch", api.score_batch, True), methods=["POST"]),
        Route("/v1/models", guarded("/v1/models", lambda _b, _d: api.models(), False), methods=["GET"]),
        Route("/openapi.json", openapi_doc, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: bad_method})


def _reply(code: str, message: str):
    from starlette.responses import JSONResponse

    return JSONResponse(_error_body(code, message), status_code=HTTP_STATUS.get(code, 500))


class _Endpoint:
    """One guarded route: authorization (the gRPC method's roles), body size and JSON, the deadline header,
    the handler in Starlette's thread pool, errors mapped like gRPC's, and ``on_request`` timing."""

    def __init__(self, route: str, handler: Callable[[Any, float | None], dict], needs_body: bool,
                 authorize: Callable[[str, str | None], str | None] | None, max_body_bytes: int,
                 on_request: Callable[[str, str, float], None] | None):
        self.route, self.handler, self.needs_body = route, handler, needs_body
        self.authorize, self.max_body_bytes, self.on_request = authorize, max_body_bytes, on_request

    async def endpoint(self, request):
        start = time.perf_counter()
        response = await self._handle(request)
        if self.on_request is not None:
            self.on_request(self.route, str(response.status_code), time.perf_counter() - start)
        return response

    async def _handle(self, request):
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        from distillery.rpc.errors import status_for

        if self.authorize is not None:
            refused = self.authorize(ROUTE_METHODS[self.route], request.headers.get("authorization"))
            if refused == "UNAUTHENTICATED":
                return _reply(refused, "missing or invalid bearer token")
            if refused:
                return _reply(refused, f"this token may not call {self.route}")
        body = None
        if self.needs_body:
            raw = await request.body()
            if len(raw) > self.max_body_bytes:
                return JSONResponse(_error_body("INVALID_ARGUMENT", f"request body over {self.max_body_bytes:,} "
                                                "bytes; split it"), status_code=413)
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                return _reply("INVALID_ARGUMENT", f"the request body is not valid JSON: {exc}")
        deadline = _deadline(request.headers.get("x-request-timeout"))
        try:
            result = await run_in_threadpool(self.handler, body, deadline)
        except ApiError as exc:
            return _reply(exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - the same mapping as gRPC: domain error -> status code
            code, message = status_for(exc)
            return _reply(code.name, message)
        return JSONResponse(result)


def _deadline(header: str | None) -> float | None:
    """``X-Request-Timeout: <seconds>`` -> a monotonic deadline (like a gRPC deadline); absent or bad: none."""
    try:
        seconds = float(header) if header else 0.0
    except ValueError:
        return None
    return time.monotonic() + seconds if seconds > 0 else None


class HttpServer:
    """uvicorn in a daemon thread; ``port`` is the bound one (0 in the settings picks a free port)."""

    def __init__(self, app, host: str, port: int, ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
                 ssl_ca_certs: str | None = None):
        import ssl

        import uvicorn

        kwargs: dict[str, Any] = {}
        if ssl_certfile:
            kwargs.update(ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
            if ssl_ca_certs:  # mutual TLS, as on the gRPC port
                kwargs.update(ssl_ca_certs=ssl_ca_certs, ssl_cert_reqs=ssl.CERT_REQUIRED)
        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                     lifespan="off", **kwargs)
        self.server = uvicorn.Server(self.config)
        self.port = 0
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> int:
        self._thread = threading.Thread(target=self.server.run, name="http-api", daemon=True)
        self._thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise OSError("the HTTP server could not start (port in use?)")
            if time.monotonic() > end:
                raise OSError("the HTTP server did not start in time")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self.port

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)


def _authorizer(settings) -> Callable[[str, str | None], str | None] | None:
    """The gRPC services' token check (distillery.roles), as ``authorize(method, header) -> refusal code``."""
    try:
        from distillery.roles import Decision, TokenRoles, authorize
    except ImportError:  # before role tokens existed: the single all-role auth_token
        return _single_token(settings)

    tokens = TokenRoles.from_settings(settings)
    if not tokens:
        return None

    def check(method: str, header: str | None) -> str | None:
        decision = authorize(tokens, method, header)
        if decision is Decision.ALLOW:
            return None
        return "UNAUTHENTICATED" if decision is Decision.UNAUTHENTICATED else "PERMISSION_DENIED"

    return check


def _single_token(settings) -> Callable[[str, str | None], str | None] | None:
    import hmac

    token = settings.auth_token.get_secret_value() if settings.auth_token else ""
    if not token:
        return None

    def check(_method: str, header: str | None) -> str | None:
        scheme, _, given = (header or "").strip().partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
        return None if ok else "UNAUTHENTICATED"

    return check


def serve_http(settings, engine: ScoringEngine, grpc_server=None) -> HttpServer | None:
    """Start the HTTP API of an inference process (``http_port`` -1: none). The bound port goes into the ready
    file next to the gRPC and metrics ports (``http_port``)."""
    if settings.http_port < 0:
        return None
    from prometheus_client import Counter, Histogram

    requests = _HTTP_METRICS.setdefault("requests", Counter(
        "distillery_inference_http_requests_total", "HTTP/JSON scoring requests, by route and HTTP status.",
        ["route", "status"]))
    seconds = _HTTP_METRICS.setdefault("seconds", Histogram(
        "distillery_inference_http_seconds", "HTTP/JSON request handling time, by route.", ["route"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)))

    def observe(route: str, status: str, elapsed: float) -> None:
        requests.labels(route, status).inc()
        seconds.labels(route).observe(elapsed)

    api = ScoringHttpApi(engine, settings.max_text_bytes, settings.max_request_articles)
    app = build_app(api, _authorizer(settings), settings.max_message_bytes, on_request=observe)
    tls = settings.tls_cert_file
    server = HttpServer(app, settings.host, settings.http_port, str(tls) if tls else None,
                        str(settings.tls_key_file) if tls else None,
                        str(settings.tls_client_ca_file) if tls and settings.tls_client_ca_file else None)
    port = server.start()
    if grpc_server is not None:
        grpc_server.extra_ports = {**getattr(grpc_server, "extra_ports", {}), "http_port": port}
    logger.info("http api serving", extra={"fields": {"http_port": port, "tls": bool(tls)}})
    return server


_HTTP_METRICS: dict[str, Any] = {}
