"""gRPC OracleService: Label and LabelStream over the engine (messages are translated to domain types here)."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
from distillery_services.oracle_gateway.engine import OracleEngine, OracleFailure

from distillery.labels import OracleLabel
from distillery.messages import label_message, label_request_of
from distillery.redact import public
from distillery.rpc.errors import handle_errors, item_error, status_for
from distillery.v1 import common_pb2, oracle_pb2, oracle_pb2_grpc

_DONE = object()


class OracleServicer(oracle_pb2_grpc.OracleServiceServicer):
    def __init__(self, engine: OracleEngine, stream_concurrency: int = 16):
        self.engine = engine
        self.stream_concurrency = stream_concurrency
        self._pool = ThreadPoolExecutor(max_workers=stream_concurrency, thread_name_prefix="oracle-label")

    def Label(self, request, context):
        # Not wrapped by handle_errors: grpc's context.abort raises a plain Exception, which that decorator
        # would turn into INTERNAL; map every error here and abort exactly once.
        try:
            label = self._label(request)
        except OracleFailure as exc:
            code, message = getattr(grpc.StatusCode, exc.code, grpc.StatusCode.UNAVAILABLE), public(str(exc))
        except Exception as exc:  # noqa: BLE001 - every error becomes a status
            code, message = status_for(exc)
        else:
            return oracle_pb2.LabelResponse(label=label_message(label))
        context.abort(code, message)

    def _label(self, request: oracle_pb2.LabelRequest) -> OracleLabel:
        return self.engine.label(label_request_of(request))

    def _one(self, request: oracle_pb2.LabelRequest) -> oracle_pb2.LabelStreamResponse:
        try:
            return oracle_pb2.LabelStreamResponse(article_id=request.article.id or self._derived(request),
                                                  label=label_message(self._label(request)))
        except OracleFailure as exc:
            error = common_pb2.ItemError(code=exc.code, message=public(str(exc)))
            return oracle_pb2.LabelStreamResponse(article_id=request.article.id, error=error)
        except Exception as exc:  # noqa: BLE001 - one bad item never fails the stream
            return oracle_pb2.LabelStreamResponse(article_id=request.article.id, error=item_error(exc))

    @handle_errors
    def GetBudgets(self, request, context):
        if request.filter:
            self.engine.catalog.get(request.filter)  # NOT_FOUND for a filter this gateway does not serve
        rows = self.engine.budgets.overview(request.filter)
        return oracle_pb2.GetBudgetsResponse(budgets=[oracle_pb2.Budget(**row) for row in rows])

    @handle_errors
    def SetBudget(self, request, context):
        if request.scope == "filter":
            self.engine.catalog.get(request.name)
        self.engine.budgets.set_limit(request.scope, request.name, request.limit_usd)
        spent = self.engine.budgets.spent(request.scope, request.name)
        return oracle_pb2.Budget(scope=request.scope, name=request.name, limit_usd=request.limit_usd,
                                 spent_usd=spent, remaining_usd=max(0.0, request.limit_usd - spent)
                                 if request.limit_usd else 0.0)

    @staticmethod
    def _derived(request: oracle_pb2.LabelRequest) -> str:
        from distillery.articles import derive_id

        a = request.article
        return derive_id(a.url, a.title, a.text)

    @handle_errors
    def LabelStream(self, request_iterator, context):
        """Label requests concurrently; answers arrive as labels complete (bounded in-flight)."""
        results: queue.Queue = queue.Queue()
        slots = threading.BoundedSemaphore(self.stream_concurrency)
        failure: list[BaseException] = []

        def feed() -> None:
            submitted = 0
            try:
                for request in request_iterator:
                    slots.acquire()
                    if not context.is_active():
                        slots.release()
                        break
                    fut = self._pool.submit(self._one, request)
                    fut.add_done_callback(lambda f: (results.put(f.result()), slots.release()))
                    submitted += 1
            except Exception as exc:  # noqa: BLE001 - e.g. the client cancelled mid-stream
                failure.append(exc)
            finally:
                results.put((_DONE, submitted))

        threading.Thread(target=feed, name="oracle-stream-feed", daemon=True).start()
        yielded, expected = 0, None
        while expected is None or yielded < expected:
            item = results.get()
            if isinstance(item, tuple) and item[0] is _DONE:
                expected = item[1]
                continue
            yielded += 1
            yield item
        if failure and context.is_active() and not isinstance(failure[0], grpc.RpcError):
            raise failure[0]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
