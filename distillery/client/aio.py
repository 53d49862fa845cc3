"""asyncio clients (grpc.aio): the same calls and typed results as :mod:`distillery.client.sync`.

    async with AsyncScoringClient("127.0.0.1:50054") as client:
        scores = await client.score({"title": "...", "text": "..."}, filters=["uplifting"])
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable

import grpc

from distillery.client import _requests as req
from distillery.client import types as t
from distillery.client.channel import ChannelConfig, open_aio_channel
from distillery.client.errors import ClientError
from distillery.v1 import (
    oracle_pb2,
    oracle_pb2_grpc,
    prefilter_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)


class _AsyncClient:
    _stub_cls: type

    def __init__(self, target: str | None = None, *, config: ChannelConfig | None = None, **settings):
        if config is None:
            config = ChannelConfig.from_env(target=target, **settings)
        elif target or settings:
            from dataclasses import replace

            config = replace(config, **({"target": target} if target else {}), **settings)
        self.config = config
        self.channel = open_aio_channel(config)
        self.stub = self._stub_cls(self.channel)

    def _kw(self, timeout: float | None) -> dict:
        return {"timeout": timeout if timeout is not None else self.config.timeout, "metadata": self.config.metadata()}

    async def _call(self, method: str, request, timeout: float | None = None):
        try:
            return await getattr(self.stub, method)(request, **self._kw(timeout))
        except grpc.RpcError as exc:
            raise ClientError.from_rpc(exc) from None

    async def wait_ready(self, timeout: float = 10.0) -> None:
        import asyncio

        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout)
        except asyncio.TimeoutError:
            raise ClientError("UNAVAILABLE", f"{self.config.target} not reachable within {timeout:g}s") from None

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


async def _aiter(items: Iterable | AsyncIterable) -> AsyncIterator:
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


class AsyncScoringClient(_AsyncClient):
    _stub_cls = scoring_pb2_grpc.ScoringServiceStub

    async def score(self, article: t.ArticleLike, filters: Iterable[str] | str | None = None,
                    timeout: float | None = None) -> list[t.Score]:
        return t.scores_pb(await self._call("Score", req.score(article, filters), timeout))

    async def score_batch(self, articles: Iterable[t.ArticleLike], filters: Iterable[str] | str | None = None,
                          timeout: float | None = None) -> list[list[t.Score]]:
        response = await self._call("ScoreBatch", req.score_batch(articles, filters), timeout)
        return [t.scores_pb(r) for r in response.responses]

    async def score_stream(self, articles: Iterable[t.ArticleLike] | AsyncIterable[t.ArticleLike],
                           filters: Iterable[str] | str | None = None, timeout: float | None = None,
                           ) -> AsyncIterator[list[t.Score] | t.ItemFailure]:
        filter_refs = req.refs(filters)

        async def requests():
            async for a in _aiter(articles):
                yield scoring_pb2.ScoreRequest(article=t.article(a), filters=filter_refs)

        try:
            async for item in self.stub.ScoreStream(requests(), **self._kw(timeout)):
                if item.HasField("error"):
                    yield t.ItemFailure(item.response.article_id, item.error.code, item.error.message)
                else:
                    yield t.scores_pb(item.response)
        except grpc.RpcError as exc:
            raise ClientError.from_rpc(exc) from None


class AsyncPrefilterClient(_AsyncClient):
    _stub_cls = prefilter_pb2_grpc.PrefilterServiceStub

    async def check(self, articles: Iterable[t.ArticleLike], filters: Iterable[str] | str | None = None,
                    timeout: float | None = None) -> list[t.Decision]:
        response = await self._call("Check", req.check(articles, filters), timeout)
        return [t.decision_pb(d) for d in response.decisions]


class AsyncOracleClient(_AsyncClient):
    _stub_cls = oracle_pb2_grpc.OracleServiceStub

    async def label(self, article: t.ArticleLike, filter: str, oracle: str = "", job_id: str = "",
                    reason: str = "training", timeout: float | None = None) -> t.Label:
        response = await self._call("Label", req.label(article, filter, oracle, job_id, reason), timeout)
        return t.label_pb(response.label)

    async def budgets(self, filter: str = "", timeout: float | None = None) -> list[t.Budget]:
        response = await self._call("GetBudgets", oracle_pb2.GetBudgetsRequest(filter=filter), timeout)
        return [t.budget_pb(b) for b in response.budgets]

    async def set_budget(self, scope: str, name: str, usd: float, timeout: float | None = None) -> t.Budget:
        return t.budget_pb(await self._call("SetBudget", req.set_budget(scope, name, usd), timeout))


class AsyncTrainerClient(_AsyncClient):
    _stub_cls = trainer_pb2_grpc.TrainerServiceStub

    async def start_job(self, filters: Iterable[str] | str, kind: str = "", labels_path: str = "",
                        promote: bool = False, seed: int = 0, params: dict[str, str] | None = None,
                        timeout: float | None = None) -> t.Job:
        request = req.start_job(filters, kind, labels_path, promote, seed, params)
        return t.job_pb(await self._call("StartJob", request, timeout))

    async def get_job(self, job_id: str, timeout: float | None = None) -> t.Job:
        return t.job_pb(await self._call("GetJob", trainer_pb2.GetJobRequest(job_id=job_id), timeout))

    async def list_jobs(self, filter: str | None = None, limit: int = 0, timeout: float | None = None) -> list[t.Job]:
        request = trainer_pb2.ListJobsRequest(limit=limit, **req.filter_only(filter))
        return [t.job_pb(j) for j in (await self._call("ListJobs", request, timeout)).jobs]

    async def cancel_job(self, job_id: str, timeout: float | None = None) -> t.Job:
        return t.job_pb(await self._call("CancelJob", trainer_pb2.GetJobRequest(job_id=job_id), timeout))

    async def list_models(self, filter: str | None = None, timeout: float | None = None) -> list[t.ModelVersion]:
        request = trainer_pb2.ListModelsRequest(**req.filter_only(filter))
        return [t.model_pb(m) for m in (await self._call("ListModels", request, timeout)).models]

    async def promote(self, filter: str, version: str, timeout: float | None = None) -> t.ModelVersion:
        request = trainer_pb2.PromoteRequest(filter=t.filter_ref(filter), version=version)
        return t.model_pb(await self._call("Promote", request, timeout))

    async def rollback(self, filter: str, timeout: float | None = None) -> t.ModelVersion:
        request = trainer_pb2.RollbackRequest(filter=t.filter_ref(filter))
        return t.model_pb(await self._call("Rollback", request, timeout))
