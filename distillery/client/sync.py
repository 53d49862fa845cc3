"""Blocking clients: ScoringClient, PrefilterClient, OracleClient, TrainerClient.

    with ScoringClient("dns:///inference.ns.svc.cluster.local:50051", token="...") as client:
        for score in client.score({"title": "...", "text": "..."}, filters=["uplifting"]):
            print(score.filter, score.overall, score.tier)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import grpc

from distillery.client import _requests as req
from distillery.client import types as t
from distillery.client.channel import ChannelConfig, open_channel
from distillery.client.errors import ClientError
from distillery.v1 import (
    common_pb2,
    oracle_pb2,
    oracle_pb2_grpc,
    prefilter_pb2,
    prefilter_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)


class _Client:
    _stub_cls: type

    def __init__(self, target: str | None = None, *, config: ChannelConfig | None = None, **settings):
        """``target`` and any :class:`ChannelConfig` field (token, tls_ca, timeout ...); unset ones come from
        ``config`` or the ``DISTILLERY_*`` environment."""
        if config is None:
            config = ChannelConfig.from_env(target=target, **settings)
        elif target or settings:
            from dataclasses import replace

            config = replace(config, **({"target": target} if target else {}), **settings)
        self.config = config
        self.channel = open_channel(config)
        self.stub = self._stub_cls(self.channel)

    def _kw(self, timeout: float | None) -> dict:
        return {"timeout": timeout if timeout is not None else self.config.timeout, "metadata": self.config.metadata()}

    def _call(self, method: str, request, timeout: float | None = None):
        try:
            return getattr(self.stub, method)(request, **self._kw(timeout))
        except grpc.RpcError as exc:
            raise ClientError.from_rpc(exc) from None

    def _stream(self, method: str, requests, timeout: float | None = None) -> Iterator:
        try:
            yield from getattr(self.stub, method)(requests, **self._kw(timeout))
        except grpc.RpcError as exc:
            raise ClientError.from_rpc(exc) from None

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel is connected (ClientError UNAVAILABLE after ``timeout``)."""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise ClientError("UNAVAILABLE", f"{self.config.target} not reachable within {timeout:g}s") from None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ScoringClient(_Client):
    """The inference service: scores from the promoted students."""

    _stub_cls = scoring_pb2_grpc.ScoringServiceStub

    def score(self, article: t.ArticleLike, filters: Iterable[str] | str | None = None,
              timeout: float | None = None) -> list[t.Score]:
        """One article, one Score per filter (every loaded filter when ``filters`` is empty)."""
        return t.scores_pb(self._call("Score", req.score(article, filters), timeout))

    def score_batch(self, articles: Iterable[t.ArticleLike], filters: Iterable[str] | str | None = None,
                    timeout: float | None = None) -> list[list[t.Score]]:
        """Several articles in one call; the answer keeps the request order."""
        response = self._call("ScoreBatch", req.score_batch(articles, filters), timeout)
        return [t.scores_pb(r) for r in response.responses]

    def score_stream(self, articles: Iterable[t.ArticleLike], filters: Iterable[str] | str | None = None,
                     timeout: float | None = None) -> Iterator[list[t.Score] | t.ItemFailure]:
        """Stream articles in, get each one's scores (or an ItemFailure) back in order; the stream is
        flow-controlled, so ``articles`` may be an unbounded generator."""
        filter_refs = req.refs(filters)
        requests = (scoring_pb2.ScoreRequest(article=t.article(a), filters=filter_refs) for a in articles)
        for item in self._stream("ScoreStream", requests, timeout):
            if item.HasField("error"):
                yield t.ItemFailure(item.response.article_id, item.error.code, item.error.message)
            else:
                yield t.scores_pb(item.response)

    def raw(self) -> scoring_pb2_grpc.ScoringServiceStub:
        """The generated stub, for calls and fields this wrapper does not cover."""
        return self.stub


class PrefilterClient(_Client):
    _stub_cls = prefilter_pb2_grpc.PrefilterServiceStub

    def check(self, articles: Iterable[t.ArticleLike], filters: Iterable[str] | str | None = None,
              timeout: float | None = None) -> list[t.Decision]:
        """One Decision per article and filter."""
        response = self._call("Check", req.check(articles, filters), timeout)
        return [t.decision_pb(d) for d in response.decisions]

    def check_stream(self, articles: Iterable[t.ArticleLike], filters: Iterable[str] | str | None = None,
                     timeout: float | None = None) -> Iterator[list[t.Decision] | t.ItemFailure]:
        filter_refs = req.refs(filters)
        requests = (prefilter_pb2.CheckStreamRequest(article=t.article(a), filters=filter_refs) for a in articles)
        for item in self._stream("CheckStream", requests, timeout):
            if item.HasField("error"):
                yield t.ItemFailure(item.article_id, item.error.code, item.error.message)
            else:
                yield [t.decision_pb(d) for d in item.decisions]


class OracleClient(_Client):
    _stub_cls = oracle_pb2_grpc.OracleServiceStub

    def label(self, article: t.ArticleLike, filter: str, oracle: str = "", job_id: str = "",
              reason: str = "training", timeout: float | None = None) -> t.Label:
        """An oracle label (from the label store or cache when already paid for)."""
        return t.label_pb(self._call("Label", req.label(article, filter, oracle, job_id, reason), timeout).label)

    def budgets(self, filter: str = "", timeout: float | None = None) -> list[t.Budget]:
        response = self._call("GetBudgets", oracle_pb2.GetBudgetsRequest(filter=filter), timeout)
        return [t.budget_pb(b) for b in response.budgets]

    def set_budget(self, scope: str, name: str, usd: float, timeout: float | None = None) -> t.Budget:
        """Cap a filter or a job at ``usd`` (0 removes the cap) until the gateway restarts."""
        return t.budget_pb(self._call("SetBudget", req.set_budget(scope, name, usd), timeout))


class TrainerClient(_Client):
    _stub_cls = trainer_pb2_grpc.TrainerServiceStub

    def start_job(self, filters: Iterable[str] | str, kind: str = "", labels_path: str = "", promote: bool = False,
                  seed: int = 0, params: dict[str, str] | None = None, timeout: float | None = None) -> t.Job:
        request = req.start_job(filters, kind, labels_path, promote, seed, params)
        return t.job_pb(self._call("StartJob", request, timeout))

    def get_job(self, job_id: str, timeout: float | None = None) -> t.Job:
        return t.job_pb(self._call("GetJob", trainer_pb2.GetJobRequest(job_id=job_id), timeout))

    def watch_job(self, job_id: str, timeout: float | None = None) -> Iterator[t.Job]:
        """Every change of the job until it is final (pass a timeout for long jobs: the default deadline is
        per call)."""
        try:
            for job in self.stub.WatchJob(trainer_pb2.GetJobRequest(job_id=job_id), timeout=timeout,
                                          metadata=self.config.metadata()):
                yield t.job_pb(job)
        except grpc.RpcError as exc:
            raise ClientError.from_rpc(exc) from None

    def list_jobs(self, filter: str | None = None, limit: int = 0, timeout: float | None = None) -> list[t.Job]:
        request = trainer_pb2.ListJobsRequest(limit=limit, **req.filter_only(filter))
        return [t.job_pb(j) for j in self._call("ListJobs", request, timeout).jobs]

    def cancel_job(self, job_id: str, timeout: float | None = None) -> t.Job:
        return t.job_pb(self._call("CancelJob", trainer_pb2.GetJobRequest(job_id=job_id), timeout))

    def list_models(self, filter: str | None = None, timeout: float | None = None) -> list[t.ModelVersion]:
        request = trainer_pb2.ListModelsRequest(**req.filter_only(filter))
        return [t.model_pb(m) for m in self._call("ListModels", request, timeout).models]

    def get_model(self, filter: str, version: str = "promoted", timeout: float | None = None) -> t.ModelVersion:
        request = trainer_pb2.GetModelRequest(filter=t.filter_ref(filter), version=version)
        return t.model_pb(self._call("GetModel", request, timeout))

    def promote(self, filter: str, version: str, timeout: float | None = None) -> t.ModelVersion:
        request = trainer_pb2.PromoteRequest(filter=t.filter_ref(filter), version=version)
        return t.model_pb(self._call("Promote", request, timeout))

    def rollback(self, filter: str, timeout: float | None = None) -> t.ModelVersion:
        request = trainer_pb2.RollbackRequest(filter=t.filter_ref(filter))
        return t.model_pb(self._call("Rollback", request, timeout))


__all__ = ["ClientError", "OracleClient", "PrefilterClient", "ScoringClient", "TrainerClient", "common_pb2"]
