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

from distillery.articles import InvalidArticleError
from distillery.filters.prompt import output_json_schema
from distillery.filters.spec import FilterSpec
from distillery.logs import log
from distillery.rpc.errors import BudgetExhaustedError
from distillery.v1 import article_pb2, common_pb2, oracle_pb2
from services.oracle_gateway.engine import OracleEngine, OracleFailure
from services.oracle_gateway.jobs import JobProgress
from services.oracle_gateway.parsing import ResponseInvalidError
from services.oracle_gateway.providers import (
    AnthropicProvider,
    OpenAIProvider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
)

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


def run_batch_job(engine: OracleEngine, spec: FilterSpec, articles: Iterable[article_pb2.Article], oracle: str,
                  job_id: str, budget_usd: float = 0.0, chunk: int = 500,
                  passes: Callable[[article_pb2.Article], bool] | None = None,
                  progress: JobProgress | None = None, sleep: Callable[[float], None] = time.sleep) -> JobProgress:
    progress = progress or JobProgress()
    if budget_usd > 0:
        engine.budgets.set_job_budget(job_id, budget_usd)
    state_path = Path(engine.settings.state_dir) / "batches" / f"{job_id}.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"batches": []}
    api = BatchAPI(engine.resolve_oracle(oracle, spec).provider)
    requests: dict[str, oracle_pb2.LabelRequest] = {}
    todo: list[tuple[str, ProviderRequest]] = []
    in_batches = {cid for b in state["batches"] for cid in b["ids"]}
    for article in articles:
        req = oracle_pb2.LabelRequest(article=article, filter=common_pb2.FilterRef(name=spec.name,
                                      version=spec.version), oracle=oracle, job_id=job_id,
                                      reason=oracle_pb2.LABEL_REASON_TRAINING)
        try:
            art, _spec, _oracle, _phash, prompt, temperature, stored = engine.prepare(req)
        except InvalidArticleError as exc:
            progress.invalid += 1
            progress.errors.append(str(exc))
            continue
        if passes is not None and not passes(art):
            progress.prefiltered += 1
            continue
        req.article.CopyFrom(art)
        if stored is not None:
            progress.cached += 1
            progress.done += 1
            continue
        requests[art.id] = req
        if art.id in in_batches:
            continue
        todo.append((art.id, ProviderRequest(prompt=prompt, spec=spec, article=art, temperature=temperature,
                                             max_output_tokens=spec.oracle.max_output_tokens,
                                             json_schema=output_json_schema(spec))))
    # Reserve the estimated cost of everything to submit; refuse the whole chunk that would pass the budget.
    reserved_here: set[str] = set()
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        estimate = sum(engine.estimate(spec, r.article, oracle)[2] for _, r in part)
        try:
            engine.budgets.reserve(spec.name, job_id, estimate)
        except BudgetExhaustedError as exc:
            progress.stopped_reason = str(exc)
            break
        batch_id = api.submit(part)
        reserved_here.add(batch_id)
        state["batches"].append({"id": batch_id, "ids": [cid for cid, _ in part], "estimate": estimate})
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps(state))
        log(logger, logging.INFO, "batch submitted", batch_id=batch_id, requests=len(part), job_id=job_id)
    cfg = engine.resolve_oracle(oracle, spec).cfg
    for batch in state["batches"]:
        if batch.get("collected"):
            continue
        while not api.poll(batch["id"]):
            sleep(cfg.batch_poll_seconds)
        results = api.collect(batch["id"])
        spent = 0.0
        for cid in batch["ids"]:
            req = requests.get(cid)
            if req is None:
                continue
            result = results.get(cid, "missing from the batch results")
            try:
                if isinstance(result, str):
                    raise ResponseInvalidError([result])
                label = engine.record_batch_response(req, result)
                spent += label.usage.cost_usd
                progress.labelled += 1
                progress.cost_usd += label.usage.cost_usd
            except ResponseInvalidError:
                try:  # re-ask synchronously, with the corrective-retry path
                    label = engine.label(req)
                    progress.labelled += 1
                    progress.cost_usd += label.usage.cost_usd
                except (OracleFailure, BudgetExhaustedError) as exc:
                    progress.failed += 1
                    progress.errors.append(str(exc))
            progress.done += 1
        # A reservation lives in this process (local counters) or in Redis (shared, survives a restart).
        still_reserved = batch["id"] in reserved_here or engine.shares_state
        estimate = batch.get("estimate", 0.0) if still_reserved else 0.0
        engine.budgets.settle(engine.budgets.keys(spec.name, job_id), estimate, spent)
        batch["collected"] = True
        state_path.write_text(json.dumps(state))
    return progress
