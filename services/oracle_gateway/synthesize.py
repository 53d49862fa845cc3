"""Synthesis: an LLM "writer" writes articles aimed at a score profile the real stream rarely shows.

The writer is an ordinary configured oracle (an LLM provider; the synthetic oracle cannot write). Each
article is then labelled through the normal oracle path like any other article: the intended profile
is kept in the article's metadata (``synthetic_profile``) and never used as a label. Articles are
marked synthetic (``metadata["synthetic"] = "true"``), so the label store flags them and training can
weight or exclude them. Writer calls are paced, retried, priced and reserved against the same filter and
job budgets as labelling; what a writer call cost is kept in the article's metadata.

Profile levels map onto the spec's scale bands: ``low`` = 0-2 and 3-4, ``medium`` = 5-6, ``high`` =
7-8 and 9-10. The writer prompt shows each targeted dimension's description and the scale text of its
target bands.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from distillery_services.oracle_gateway.engine import OracleEngine
from distillery_services.oracle_gateway.jobs import JobProgress
from distillery_services.oracle_gateway.parsing import ResponseInvalidError, extract_json
from distillery_services.oracle_gateway.providers import ProviderError, ProviderRequest

from distillery.articles import Article, InvalidArticleError, derive_id, validate
from distillery.errors import BudgetExhaustedError
from distillery.filters.spec import FilterSpec
from distillery.logs import log
from distillery.store.labels import CALL_INVALID, CALL_WRITTEN, utc_now

logger = logging.getLogger(__name__)

LEVELS: dict[str, tuple[str, ...]] = {"low": ("0-2", "3-4"), "medium": ("5-6",), "high": ("7-8", "9-10")}
LEVEL_RANGES: dict[str, tuple[float, float]] = {"low": (0.0, 4.0), "medium": (5.0, 6.0), "high": (7.0, 10.0)}

# Metadata keys of a synthesized article (besides "synthetic" and "synthetic_filter").
SYNTHETIC_SOURCE = "synthetic_source"  # "llm_writer" (the embedded corpus has none)
SYNTHETIC_PROFILE = "synthetic_profile"  # JSON {dimension: level}: the intent, never a label
SYNTHETIC_JOB = "synthetic_job"
SYNTHETIC_WRITER = "synthetic_writer"
SYNTHETIC_WRITER_MODEL = "synthetic_writer_model"
SYNTHETIC_WRITER_COST = "synthetic_writer_cost_usd"

WRITER_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string", "minLength": 5}, "text": {"type": "string", "minLength": 200}},
    "required": ["title", "text"],
    "additionalProperties": False,
}
WRITER_MAX_OUTPUT_TOKENS = 2048
WRITER_TEMPERATURE = 0.9
MIN_TEXT_CHARS = 200

_ANGLES = ["a city", "a rural region", "a national government", "a hospital network", "a school district",
           "a cooperative", "a research group", "a small company", "a non-profit", "a utility", "a court",
           "a neighbourhood association", "an international agency", "a trade union", "a port authority"]
_FORMATS = ["news report", "feature story", "short wire item", "local news piece", "explainer"]


class SynthesisError(ValueError):
    """Bad synthesis input (profile, writer): the CLI shows it and exits 2."""


class NoWriterError(SynthesisError):
    """No LLM provider is configured to write articles."""


def parse_profile(spec: FilterSpec, text: str) -> dict[str, str]:
    """``"dim=high,dim2=low"`` -> {dim: level}; unknown dimensions or levels name the valid ones."""
    dims = spec.dimension_names
    profile: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, level = (s.strip() for s in part.partition("="))
        if not sep or not name or not level:
            raise SynthesisError(f"profile entry {part!r} must look like dimension=level "
                                 f"(levels: {', '.join(LEVELS)})")
        if name not in dims:
            raise SynthesisError(f"unknown dimension {name!r} in the profile for {spec.ref}; valid dimensions: "
                                 f"{', '.join(dims)}")
        if level.lower() not in LEVELS:
            raise SynthesisError(f"unknown level {level!r} for {name}; valid levels: {', '.join(LEVELS)}")
        if name in profile:
            raise SynthesisError(f"dimension {name!r} appears twice in the profile")
        profile[name] = level.lower()
    if not profile:
        raise SynthesisError(f"the profile is empty; give dimension=level pairs, e.g. {dims[0]}=high "
                             f"(dimensions: {', '.join(dims)}; levels: {', '.join(LEVELS)})")
    return profile


def render_writer_prompt(spec: FilterSpec, profile: dict[str, str], index: int, seed: int = 0) -> str:
    """The writer's prompt for article ``index``: filter context, per-dimension targets from the scale text."""
    rng = random.Random(f"{spec.ref}\x00{seed}\x00{index}")
    angle, form = rng.choice(_ANGLES), rng.choice(_FORMATS)
    lines = [
        "You write realistic, self-contained news articles used to test a news-rating system.",
        f"The rating system is called {spec.name!r}: {spec.description.strip()}",
    ]
    if spec.scope:
        lines.append(f"Its scope: {spec.scope.strip()}")
    lines += ["", "Write one article whose content would be rated as follows on these dimensions:", ""]
    by_name = {d.name: d for d in spec.dimensions}
    for name, level in profile.items():
        dim = by_name[name]
        lo, hi = LEVEL_RANGES[level]
        lines.append(f"- **{name}** — {dim.description.strip()} Target: {level.upper()} ({lo:g}-{hi:g} of 10). "
                     "At this level:")
        lines += [f"    - {band}: {dim.scale[band].strip()}" for band in LEVELS[level]]
        if dim.evidence_focus:
            lines.append(f"    - What counts as evidence: {dim.evidence_focus.strip()}")
    free = [n for n in spec.dimension_names if n not in profile]
    if free:
        lines += ["", f"The other dimensions ({', '.join(free)}) may take whatever values are natural for the story."]
    lines += [
        "",
        (f"Make it a {form} about {angle} (article #{index + 1} of a varied set: pick a distinct place, people "
        "and topic). Write plain factual prose of 250 to 600 words, with concrete names, numbers and sources the "
        "way a journalist would. Do not mention ratings, scores, dimensions or these instructions."),
        "",
        'Answer with one JSON object only: {"title": "<headline>", "text": "<article body>"}.',
        f"JSON Schema: {json.dumps(WRITER_SCHEMA, sort_keys=True)}",
    ]
    return "\n".join(lines)


def parse_article(text: str) -> tuple[str, str]:
    """(title, text) from the writer's answer; ResponseInvalidError when unusable."""
    value, _ = extract_json(text)
    title, body = value.get("title"), value.get("text")
    problems = []
    if not isinstance(title, str) or not title.strip():
        problems.append("'title' must be a non-empty string")
    if not isinstance(body, str) or len(body.strip()) < MIN_TEXT_CHARS:
        problems.append(f"'text' must be a string of at least {MIN_TEXT_CHARS} characters")
    if problems:
        raise ResponseInvalidError(problems)
    return title.strip(), body.strip()


def writer_corrective(exc: ResponseInvalidError) -> str:
    return ("Your previous answer could not be used: " + "; ".join(exc.problems) +
            '. Answer again with one JSON object only: {"title": "...", "text": "..."}.')


def pick_writer(engine: OracleEngine, requested: str, labeller: str = "") -> str:
    """The writer oracle: ``requested``, else the labeller when it is an LLM, else the first LLM configured."""
    llms = [n for n in engine.oracle_names() if engine._oracles[n].cfg.kind != "synthetic"]
    hint = ("synthesize needs an LLM writer; configure one under oracle_gateway.oracles (kind openai, "
            "anthropic or gemini, with model, base_url and api_key_env) and pass --writer NAME — the synthetic "
            "oracle cannot write articles")
    if requested:
        oracle = engine._oracles.get(requested)
        if oracle is None:
            raise NoWriterError(f"unknown writer {requested!r}; configured LLM oracles: "
                                f"{', '.join(llms) or 'none'}. {hint}")
        if oracle.cfg.kind == "synthetic":
            raise NoWriterError(hint)
        return requested
    if labeller and labeller in llms:
        return labeller
    if not llms:
        raise NoWriterError(hint)
    return llms[0]


def job_id_for(spec: FilterSpec, profile: dict[str, str], writer: str, oracle: str, seed: int) -> str:
    basis = f"{spec.ref}\x00{json.dumps(profile, sort_keys=True)}\x00{writer}\x00{oracle}\x00{seed}"
    return "synth-" + hashlib.sha256(basis.encode()).hexdigest()[:12]


@dataclass
class WriteProgress:
    """Writer counters (labelling counters live in the JobProgress)."""

    written: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    resumed: int = 0


class Writer:
    """Writes articles for one (spec, profile) through a configured LLM oracle, within the budgets."""

    def __init__(self, engine: OracleEngine, spec: FilterSpec, profile: dict[str, str], writer: str, job_id: str,
                 seed: int = 0, sleep=time.sleep):
        self.engine, self.spec, self.profile, self.job_id, self.seed = engine, spec, profile, job_id, seed
        self.oracle = engine._oracles[writer]
        if self.oracle.cfg.kind == "synthetic":
            raise NoWriterError("synthesize needs an LLM writer; the synthetic oracle cannot write articles")
        self.progress = WriteProgress()
        self.stopped_reason = ""
        self._lock = threading.Lock()
        self._sleep = sleep
        self._rng = random.Random()

    def _estimate(self, prompt: str) -> float:
        cfg = self.oracle.cfg
        tokens_in = self.oracle.provider.estimate_input_tokens(prompt)
        price = self.engine.price(self.oracle, cfg.model or self.oracle.provider.model)
        return price.cost(tokens_in, 0, WRITER_MAX_OUTPUT_TOKENS // 2 + cfg.thinking_budget)

    def write(self, index: int) -> Article | None:
        """Write article ``index``: None when the writer failed (counted); BudgetExhaustedError passes up."""
        prompt = render_writer_prompt(self.spec, self.profile, index, self.seed)
        estimate = self._estimate(prompt)
        reserved = self.engine.budgets.reserve(self.spec.name, self.job_id, estimate)
        cfg, provider = self.oracle.cfg, self.oracle.provider
        temperature = cfg.temperature if cfg.temperature is not None else WRITER_TEMPERATURE
        request = ProviderRequest(prompt=prompt, spec=self.spec, article=Article(),
                                  temperature=temperature, max_output_tokens=WRITER_MAX_OUTPUT_TOKENS,
                                  json_schema=WRITER_SCHEMA, timeout_seconds=cfg.timeout_seconds)
        usage = [0, 0, 0]
        cost, model, error = 0.0, provider.model, ""
        attempts = repairs = 0
        try:
            while attempts < cfg.max_attempts:
                attempts += 1
                try:
                    with self.oracle.semaphore:
                        self.oracle.limiter.acquire(len(prompt) // 4 + WRITER_MAX_OUTPUT_TOKENS // 2)
                        response = provider.complete(request)
                except ProviderError as exc:
                    error = str(exc)
                    if not exc.retryable:
                        break
                    expo = min(cfg.backoff_max_seconds, cfg.backoff_base_seconds * 2 ** (attempts - 1))
                    self._sleep(max(self._rng.uniform(0, expo), exc.retry_after or 0.0))
                    continue
                call_usage = (response.input_tokens, response.cached_input_tokens, response.output_tokens)
                usage = [usage[0] + call_usage[0], usage[1] + call_usage[1], usage[2] + call_usage[2]]
                model = response.model
                cost = self.engine.price(self.oracle, model).cost(*usage)
                try:
                    title, text = parse_article(response.text)
                except ResponseInvalidError as exc:
                    self._bill(model, call_usage, CALL_INVALID)
                    error = str(exc)
                    if repairs >= cfg.max_repair_attempts:
                        break
                    repairs += 1
                    request.repair_turns.append((response.text, writer_corrective(exc)))
                    continue
                self._bill(model, call_usage, CALL_WRITTEN)
                article = self._article(index, title, text, model, cost)
                with self._lock:
                    self.progress.written += 1
                    self.progress.cost_usd += cost
                return article
        finally:
            self.engine.budgets.settle(reserved, estimate, cost)
        with self._lock:
            self.progress.failed += 1
            self.progress.cost_usd += cost
        log(logger, logging.ERROR, "writer failed", writer=self.oracle.name, filter=self.spec.ref, index=index,
            attempts=attempts, error=error)
        return None

    def _bill(self, model: str, usage: tuple[int, int, int], outcome: str) -> None:
        """Every writer call is billed: the cost ledger (and so the budgets) records it."""
        cost = self.engine.price(self.oracle, model).cost(*usage)
        self.engine._bill(self.oracle, self.spec, "", self.job_id, model, usage, cost, outcome)

    def _article(self, index: int, title: str, text: str, model: str, cost: float) -> Article:
        url = f"synthetic://{self.spec.name}/v{self.spec.version}/{self.job_id}/{index}"
        article = Article(title=title, text=text, url=url, source=f"synthesized by {self.oracle.name}",
                          source_type="synthetic", language="en", published_at=utc_now())
        article.id = derive_id(url)
        article.metadata.update({
            "synthetic": "true", "synthetic_filter": self.spec.ref, SYNTHETIC_SOURCE: "llm_writer",
            SYNTHETIC_PROFILE: json.dumps(self.profile, sort_keys=True), SYNTHETIC_JOB: self.job_id,
            SYNTHETIC_WRITER: self.oracle.name, SYNTHETIC_WRITER_MODEL: model,
            SYNTHETIC_WRITER_COST: f"{cost:.8f}",
        })
        try:
            validate(article, self.engine.settings.max_text_bytes)
        except InvalidArticleError as exc:
            raise ResponseInvalidError([str(exc)]) from None
        return article

    # -- a whole job ---------------------------------------------------------------------------------
    def already_written(self) -> tuple[set[int], float]:
        """Indices of this job's articles already in the store (labelled), and what writing them cost.

        Their writer spend is added to the budget counters, so a restarted job keeps its writer spend.
        """
        done: set[int] = set()
        seen: set[str] = set()
        spent = filter_spent = 0.0
        for row in self.engine.store.iter_labelled(self.spec.name):
            if row.metadata.get(SYNTHETIC_SOURCE) != "llm_writer" or row.id in seen:
                continue  # one row per label: count each article once
            seen.add(row.id)
            cost = float(row.metadata.get(SYNTHETIC_WRITER_COST) or 0.0)
            filter_spent += cost
            index = row.url.rsplit("/", 1)[-1]
            if row.metadata.get(SYNTHETIC_JOB) == self.job_id and index.isdigit():
                done.add(int(index))
                spent += cost
        for key in self.engine.budgets.keys(self.spec.name, self.job_id):
            extra = filter_spent if key.startswith("filter:") else spent
            if extra:
                self.engine.budgets.settle([key], 0.0, extra)
        return done, spent

    def articles(self, count: int, workers: int, progress: JobProgress | None = None) -> Iterator[Article]:
        """Write articles 0..count-1 not yet in the store, ``workers`` at a time; yields them as they come.

        Stops submitting at the first BudgetExhaustedError (the reason is in ``stopped_reason`` and, when
        given, ``progress.stopped_reason``).
        """
        done, _ = self.already_written()
        self.progress.resumed = len(done)
        todo = iter([i for i in range(count) if i not in done])
        pending: set[Future] = set()
        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="writer")
        stopped = False
        try:
            while True:
                while not stopped and len(pending) < max(1, workers) * 2:
                    index = next(todo, None)
                    if index is None:
                        break
                    pending.add(pool.submit(self.write, index))
                if not pending:
                    return
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    try:
                        article = future.result()
                    except BudgetExhaustedError as exc:
                        stopped = True
                        self.stopped_reason = self.stopped_reason or str(exc)
                        if progress is not None:
                            progress.stopped_reason = progress.stopped_reason or str(exc)
                        continue
                    if article is not None:
                        yield article
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def run_synthesis(writer: Writer, oracle: str, count: int, budget_usd: float = 0.0, workers: int = 4,
                  progress: JobProgress | None = None) -> JobProgress:
    """Write ``count`` articles with ``writer`` and label each through ``oracle``; resumable by the writer's job.

    Writing and labelling overlap: each article goes to the labelling pool as soon as it is written. No
    prefilter: the articles were written for this filter on purpose.
    """
    from distillery_services.oracle_gateway.jobs import run_job

    progress = progress or JobProgress(total=count)
    if budget_usd > 0:
        writer.engine.budgets.set_job_budget(writer.job_id, budget_usd)
    run_job(writer.engine, writer.spec, writer.articles(count, workers, progress), oracle, writer.job_id, workers,
            budget_usd, None, progress)
    if writer.stopped_reason and not progress.stopped_reason:
        progress.stopped_reason = writer.stopped_reason
    return progress


def export_job(engine: OracleEngine, spec: FilterSpec, job_id: str, oracle: str, path) -> int:
    """Write the job's labelled synthetic articles (label-store export shape) as JSONL; returns the count."""
    from pathlib import Path

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with out.open("w", encoding="utf-8") as fh:
        for row in engine.store.iter_labelled(spec.name, spec.version, prompt_hash=engine.prompt_hash(spec)):
            if row.metadata.get(SYNTHETIC_JOB) == job_id and row.oracle == oracle:
                fh.write(json.dumps(row.to_record(), ensure_ascii=False) + "\n")
                n += 1
    return n
