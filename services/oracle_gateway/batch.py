"""Batch-API mode for OpenAI and Anthropic (submit, poll, collect): half the price for jobs that can wait.

A batch job skips articles already in the label store, reserves the estimated batch cost against the
budgets, submits the rest in batches of ``chunk`` requests and records the batch ids in
``<state_dir>/batches/<job_id>.json`` *before* polling, so a job killed while waiting resumes by polling
the same batches (never resubmitting them). Answers that fail validation are re-asked through the
normal synchronous path (with its corrective message); failures there are dead-lettered.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from distillery_services.oracle_gateway.engine import OracleEngine, OracleFailure
from distillery_services.oracle_gateway.jobs import JobProgress
from distillery_services.oracle_gateway.parsing import ResponseInvalidError
from distillery_services.oracle_gateway.providers import (
    AnthropicProvider,
    OpenAIProvider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
)

from distillery.articles import Article, InvalidArticleError
from distillery.errors import BudgetExhaustedError
from distillery.filters.prompt import output_json_schema
from distillery.filters.spec import FilterSpec
from distillery.labels import FilterRef, LabelReason, LabelRequest
from distillery.logs import log

logger = logging.getLogger(__name__)


class BatchAPI:
    """Submit/poll/collect over a provider's batch endpoints (one HTTP call per step, typed errors)."""

    def __init__(self, provider):
        if not isinstance(provider, (OpenAIProvider, AnthropicProvider)):
            raise TypeError(f"batch mode needs an openai or anthropic oracle, not {provider.kind!r}")
        self.provider = provider

    def submit(self, items: list[tuple[str, ProviderRequest]]) -> str:
        p = self.provider
        if isinstance(p, OpenAIProvider):
            lines = "\n".join(json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                                          "body": p.body(req)}) for cid, req in items) + "\n"
            data, _ = p.request_json("POST", "/files", files={"file": ("batch.jsonl", lines.encode(),
                                                                      "application/jsonl")},
                                     data={"purpose": "batch"})
            batch, _ = p.request_json("POST", "/batches", json_body={
                "input_file_id": data["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"})
            return batch["id"]
        batch, _ = p.request_json("POST", "/v1/messages/batches", json_body={
            "requests": [{"custom_id": cid, "params": p.body(req)} for cid, req in items]})
        return batch["id"]

    def poll(self, batch_id: str) -> bool:
        """True when the batch has finished (results can be collected)."""
        p = self.provider
        if isinstance(p, OpenAIProvider):
            data, _ = p.request_json("GET", f"/batches/{batch_id}")
            if data.get("status") in ("failed", "expired", "cancelled"):
                raise ProviderError(f"{p.name}: batch {batch_id} {data.get('status')}", retryable=False)
            return data.get("status") == "completed"
        data, _ = p.request_json("GET", f"/v1/messages/batches/{batch_id}")
        return data.get("processing_status") == "ended"

    def collect(self, batch_id: str) -> dict[str, ProviderResponse | str]:
        """custom_id -> response, or an error message for items the provider failed."""
        p = self.provider
        out: dict[str, ProviderResponse | str] = {}
        if isinstance(p, OpenAIProvider):
            info, _ = p.request_json("GET", f"/batches/{batch_id}")
            text = self._text(f"/files/{info['output_file_id']}/content")
            for line in filter(None, (x.strip() for x in text.splitlines())):
                item = json.loads(line)
                resp = item.get("response") or {}
                if resp.get("status_code") == 200:
                    body = resp["body"]
                    out[item["custom_id"]] = p.read(body, json.dumps(body))
                else:
                    out[item["custom_id"]] = p._redact(json.dumps(item.get("error") or resp)[:300])
            return out
        info, _ = p.request_json("GET", f"/v1/messages/batches/{batch_id}")
        url = info["results_url"]
        path = url.removeprefix(p.base_url)
        for line in filter(None, (x.strip() for x in self._text(path).splitlines())):
            item = json.loads(line)
            result = item.get("result") or {}
            if result.get("type") == "succeeded":
                out[item["custom_id"]] = p.read(result["message"], json.dumps(result["message"]))
            else:
                out[item["custom_id"]] = p._redact(json.dumps(result)[:300])
        return out

    def _text(self, path: str) -> str:
        p = self.provider
        resp = p._client.get(f"{p.base_url}{path}" if path.startswith("/") else path)
        p.check_status(resp.status_code, resp.text, resp.headers.get("retry-after"))
        return resp.text


def run_batch_job(engine: OracleEngine, spec: FilterSpec, articles: Iterable[Article], oracle: str,
                  job_id: str, budget_usd: float = 0.0, chunk: int = 500,
                  passes: Callable[[Article], bool] | None = None,
                  progress: JobProgress | None = None, sleep: Callable[[float], None] = time.sleep) -> JobProgress:
    progress = progress or JobProgress()
    if budget_usd > 0:
        engine.budgets.set_job_budget(job_id, budget_usd)
    job = _BatchJob(engine, spec, oracle, job_id, progress)
    api = BatchAPI(engine.resolve_oracle(oracle, spec).provider)
    todo = job.pending_requests(articles, passes)
    reserved_here = job.submit(api, todo, chunk)
    cfg = engine.resolve_oracle(oracle, spec).cfg
    for batch in job.state["batches"]:
        if batch.get("collected"):
            continue
        while not api.poll(batch["id"]):
            sleep(cfg.batch_poll_seconds)
        job.collect(api, batch, reserved_here)
    return progress


class _BatchJob:
    """One batch job: its requests by article id and its state file (the batches submitted, and collected)."""

    def __init__(self, engine: OracleEngine, spec: FilterSpec, oracle: str, job_id: str, progress: JobProgress):
        self.engine, self.spec, self.oracle, self.job_id, self.progress = engine, spec, oracle, job_id, progress
        self.state_path = Path(engine.settings.state_dir) / "batches" / f"{job_id}.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {"batches": []}
        self.requests: dict[str, LabelRequest] = {}

    def pending_requests(self, articles: Iterable[Article],
                         passes: Callable[[Article], bool] | None) -> list[tuple[str, ProviderRequest]]:
        """The calls still to submit: articles that are valid, pass the prefilter, are not in the store and
        are not in a batch already submitted (whose answers are collected, never asked again)."""
        spec, progress = self.spec, self.progress
        in_batches = {cid for b in self.state["batches"] for cid in b["ids"]}
        todo: list[tuple[str, ProviderRequest]] = []
        for article in articles:
            req = LabelRequest(article=article, filter=FilterRef(name=spec.name, version=spec.version),
                               oracle=self.oracle, job_id=self.job_id, reason=LabelReason.TRAINING)
            try:
                art, _spec, _oracle, _phash, prompt, temperature, stored = self.engine.prepare(req)
            except InvalidArticleError as exc:
                progress.invalid += 1
                progress.errors.append(str(exc))
                continue
            if passes is not None and not passes(art):
                progress.prefiltered += 1
                continue
            req.article = art
            if stored is not None:
                progress.cached += 1
                progress.done += 1
                continue
            self.requests[art.id] = req
            if art.id in in_batches:
                continue
            todo.append((art.id, ProviderRequest(prompt=prompt, spec=spec, article=art, temperature=temperature,
                                                 max_output_tokens=spec.oracle.max_output_tokens,
                                                 json_schema=output_json_schema(spec))))
        return todo

    def submit(self, api: BatchAPI, todo: list[tuple[str, ProviderRequest]], chunk: int) -> set[str]:
        """Reserve the estimated cost of each chunk and submit it, recording its batch id before any poll;
        the chunk that would pass the budget and every later one are refused. Returns the batch ids."""
        reserved_here: set[str] = set()
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            estimate = sum(self.engine.estimate(self.spec, r.article, self.oracle)[2] for _, r in part)
            try:
                self.engine.budgets.reserve(self.spec.name, self.job_id, estimate)
            except BudgetExhaustedError as exc:
                self.progress.stopped_reason = str(exc)
                break
            batch_id = api.submit(part)
            reserved_here.add(batch_id)
            self.state["batches"].append({"id": batch_id, "ids": [cid for cid, _ in part], "estimate": estimate})
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            self.state_path.write_text(json.dumps(self.state))
            log(logger, logging.INFO, "batch submitted", batch_id=batch_id, requests=len(part), job_id=self.job_id)
        return reserved_here

    def collect(self, api: BatchAPI, batch: dict, reserved_here: set[str]) -> None:
        """Record every answer of a finished batch, then settle its reservation and mark it collected."""
        engine = self.engine
        results = api.collect(batch["id"])
        spent = 0.0
        for cid in batch["ids"]:
            req = self.requests.get(cid)
            if req is None:
                continue
            spent += self._record(req, results.get(cid, "missing from the batch results"))
            self.progress.done += 1
        # A reservation lives in this process (local counters) or in Redis (shared, survives a restart).
        still_reserved = batch["id"] in reserved_here or engine.shares_state
        estimate = batch.get("estimate", 0.0) if still_reserved else 0.0
        engine.budgets.settle(engine.budgets.keys(self.spec.name, self.job_id), estimate, spent)
        batch["collected"] = True
        self.state_path.write_text(json.dumps(self.state))

    def _record(self, req: LabelRequest, result: ProviderResponse | str) -> float:
        """Store one batch answer; an unusable one is re-asked synchronously. Returns what the batch answer
        cost (the synchronous path settles its own calls)."""
        progress = self.progress
        try:
            if isinstance(result, str):
                raise ResponseInvalidError([result])
            label = self.engine.record_batch_response(req, result)
        except ResponseInvalidError as exc:
            # An unusable answer was paid for too (the ledger has it): it counts against the budgets.
            cost = getattr(exc, "cost_usd", 0.0)
            progress.cost_usd += cost
            try:  # re-ask synchronously, with the corrective-retry path
                label = self.engine.label(req)
                progress.labelled += 1
                progress.cost_usd += label.usage.cost_usd
            except (OracleFailure, BudgetExhaustedError) as failure:
                progress.failed += 1
                progress.errors.append(str(failure))
            return cost
        progress.labelled += 1
        progress.cost_usd += label.usage.cost_usd
        return label.usage.cost_usd
