"""Measured prefilter quality: false negatives and false positives against oracle (or human) labels.

- false negative: an article the oracle scored at or above the threshold (relevant) that the prefilter
  blocked. These are the expensive mistakes: the students and the oracle never see the article.
- false positive: an article below the threshold that the prefilter passed (an oracle call or student
  pass spent on noise).

A label file is JSONL. Relevance comes, per record, from the first of:
``dimension_scores`` / ``oracle_scores`` / ``scores`` (a {dimension: score} object; the overall is
computed from the filter spec: weighted mean plus gatekeepers), ``overall`` / ``oracle_overall_score``,
``relevant`` (bool), ``expected`` ("pass"/"block"), ``human_label`` ("true_positive..." /
"false_positive..."). ``--positives`` / ``--negatives`` files mark every record instead.

Records without text (e.g. human-flagged false positives kept as titles only) are judged on what they
have: their length rules are not applied, since there is no body to measure.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from distillery_services.prefilter.engine import PrefilterEngine, Verdict

from distillery.articles import read_jsonl
from distillery.filters.postprocess import overall_scores
from distillery.filters.spec import FilterSpec

_SCORE_KEYS = ("dimension_scores", "oracle_scores", "scores")
_OVERALL_KEYS = ("overall", "oracle_overall_score")


class LabelError(ValueError):
    """A label record that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Labelled:
    id: str
    title: str
    text: str
    url: str
    source_type: str
    language: str
    relevant: bool
    overall: float | None
    origin: str  # file:line


def _relevance(record: Mapping[str, Any], spec: FilterSpec, threshold: float, where: str):
    for key in _SCORE_KEYS:
        scores = record.get(key)
        if isinstance(scores, Mapping) and scores:
            missing = [d for d in spec.dimension_names if d not in scores]
            if missing:
                raise LabelError(f"{where}: {key} lacks {', '.join(missing)} of {spec.ref}")
            values = []
            for d in spec.dimension_names:
                raw = scores[d]
                raw = raw.get("score") if isinstance(raw, Mapping) else raw
                if not isinstance(raw, int | float):
                    raise LabelError(f"{where}: {key}.{d} is not a number ({raw!r})")
                values.append(float(raw))
            overall = float(overall_scores(spec, np.asarray([values]))[0][0])
            return overall >= threshold, overall
    for key in _OVERALL_KEYS:
        value = record.get(key)
        if isinstance(value, int | float):
            return float(value) >= threshold, float(value)
    if isinstance(record.get("relevant"), bool):
        return record["relevant"], None
    expected = record.get("expected")
    if expected in ("pass", "block"):
        return expected == "pass", None
    human = str(record.get("human_label") or "")
    if human.startswith(("true_positive", "false_positive")):
        return human.startswith("true_positive"), None
    raise LabelError(
        f"{where}: no label (expected one of {', '.join(_SCORE_KEYS + _OVERALL_KEYS)}, relevant, expected, "
        "human_label); or pass the file as --positives/--negatives"
    )


def load_labels(
    path: Path | str, spec: FilterSpec, threshold: float, relevant: bool | None = None
) -> list[Labelled]:
    """Read a label file; ``relevant`` True/False marks every record (positives / negatives files)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist")
    out = []
    for i, record in enumerate(read_jsonl(path), 1):
        where = f"{path}:{i}"
        if not isinstance(record, Mapping):
            raise LabelError(f"{where}: expected a JSON object")
        title = str(record.get("title") or "")
        text = str(record.get("text") or record.get("content") or "")
        if not title and not text:
            raise LabelError(f"{where}: the record has neither title nor text")
        if relevant is None:
            is_relevant, overall = _relevance(record, spec, threshold, where)
        else:
            is_relevant, overall = relevant, None
        out.append(Labelled(
            id=str(record.get("id") or record.get("article_id") or where),
            title=title, text=text, url=str(record.get("url") or ""),
            source_type=str(record.get("source_type") or ""), language=str(record.get("language") or ""),
            relevant=is_relevant, overall=overall, origin=where,
        ))
    return out


@dataclass
class Report:
    filter: str
    threshold: float
    articles: int
    positives: int
    negatives: int
    passed: int
    false_negatives: int
    false_positives: int
    title_only_records: int
    top_false_negative_reasons: list[tuple[str, int]] = field(default_factory=list)
    top_true_negative_reasons: list[tuple[str, int]] = field(default_factory=list)
    false_negative_examples: list[dict] = field(default_factory=list)

    @property
    def false_negative_rate(self) -> float:
        return self.false_negatives / self.positives if self.positives else 0.0

    @property
    def false_positive_rate(self) -> float:
        return self.false_positives / self.negatives if self.negatives else 0.0

    @property
    def pass_rate(self) -> float:
        return self.passed / self.articles if self.articles else 0.0

    @property
    def positives_passed_rate(self) -> float:
        return 1.0 - self.false_negative_rate if self.positives else 0.0

    @property
    def negatives_blocked_rate(self) -> float:
        return 1.0 - self.false_positive_rate if self.negatives else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(
            false_negative_rate=self.false_negative_rate,
            false_positive_rate=self.false_positive_rate,
            pass_rate=self.pass_rate,
            positives_passed_rate=self.positives_passed_rate,
            negatives_blocked_rate=self.negatives_blocked_rate,
        )
        return d


def _reason_key(v: Verdict) -> str:
    """Exclusions with their matched term (that is what a rule author changes); others by code alone."""
    r = v.reasons[0]
    return f"{r.code} ({r.matched})" if r.code.startswith("excluded:") and r.matched else r.code


def evaluate(engine: PrefilterEngine, ref: tuple[str, int], labelled: Iterable[Labelled],
             threshold: float, examples: int = 10) -> Report:
    (fi,) = engine.select([ref])
    spec = engine.filters[fi].spec
    fn_reasons: Counter[str] = Counter()
    tn_reasons: Counter[str] = Counter()
    report = Report(spec.ref, threshold, 0, 0, 0, 0, 0, 0, 0)
    for item in labelled:
        title_only = not item.text.strip()
        report.title_only_records += title_only
        result = engine.check(item.title, item.text, item.url, item.source_type, item.language,
                              filters=[fi], apply_length=not title_only)
        verdict = result.verdicts[0]
        report.articles += 1
        report.passed += verdict.passed
        if item.relevant:
            report.positives += 1
            if not verdict.passed:
                report.false_negatives += 1
                fn_reasons[_reason_key(verdict)] += 1
                if len(report.false_negative_examples) < examples:
                    report.false_negative_examples.append({
                        "id": item.id, "title": item.title[:100], "overall": item.overall,
                        "reason": verdict.reasons[0].code, "matched": verdict.reasons[0].matched,
                    })
        else:
            report.negatives += 1
            if verdict.passed:
                report.false_positives += 1
            else:
                tn_reasons[verdict.reasons[0].code] += 1
    report.top_false_negative_reasons = fn_reasons.most_common(10)
    report.top_true_negative_reasons = tn_reasons.most_common(10)
    return report


def export_gauges(reports: Iterable[Report], path: Path | str) -> None:
    """Write the rates as Prometheus gauges in the text format (node-exporter textfile collector)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    fn = Gauge("distillery_prefilter_false_negative_ratio",
               "Share of oracle-relevant articles the prefilter blocked (last evaluation).",
               ["filter"], registry=registry)
    fp = Gauge("distillery_prefilter_false_positive_ratio",
               "Share of oracle-irrelevant articles the prefilter passed (last evaluation).",
               ["filter"], registry=registry)
    pr = Gauge("distillery_prefilter_eval_pass_ratio", "Share of evaluated articles the prefilter passed.",
               ["filter"], registry=registry)
    n = Gauge("distillery_prefilter_eval_articles", "Labelled articles in the last evaluation, by class.",
              ["filter", "label"], registry=registry)
    for r in reports:
        fn.labels(r.filter).set(r.false_negative_rate)
        fp.labels(r.filter).set(r.false_positive_rate)
        pr.labels(r.filter).set(r.pass_rate)
        n.labels(r.filter, "relevant").set(r.positives)
        n.labels(r.filter, "irrelevant").set(r.negatives)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)


def write_json(reports: Iterable[Report], path: Path | str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps([r.to_dict() for r in reports], indent=2) + "\n")
