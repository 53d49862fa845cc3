"""The five Grafana dashboards, as code (grafana-foundation-sdk builders).

Each dashboard is a list of :class:`PanelSpec` (title, kind, PromQL queries, unit), turned into Grafana
JSON by the SDK. Queries read only metrics that the services export (checked by
``tests/deploy/test_dashboards.py`` against :mod:`distillery.dashboards.catalog`) and the recording rules
in ``deploy/prometheus/rules/recording.yml``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import heatmap, stat, table, timeseries
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as gm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE_UID = "prometheus"
DATASOURCE = gm.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
SERVICES = ("prefilter", "oracle", "trainer", "inference")
# Services that run a Kafka stage (distillery/bus: distillery_<service>_kafka_*).
KAFKA_STAGES = ("prefilter", "oracle", "inference")


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class PanelSpec:
    title: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"  # timeseries | stat | heatmap | table
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    rows: tuple[tuple[str, tuple[PanelSpec, ...]], ...]
    variables: tuple[tuple[str, str], ...] = field(default=())  # (name, label_values query)
    tags: tuple[str, ...] = ("distillery",)

    def queries(self) -> list[tuple[str, str]]:
        """``[(panel title, expr)]`` for every query of every panel."""
        return [(p.title, q.expr) for _, panels in self.rows for p in panels for q in p.queries]


def _q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def _rate(metric: str, by: str, selector: str = "") -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}[$__rate_interval]))"


def _quantile(q: float, metric: str, by: str, selector: str = "") -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[$__rate_interval])))"


Row = tuple[str, tuple[PanelSpec, ...]]  # a row of panels: (title, panels)
# Label selectors of the dashboards' variables.
_FILTER_SEL = 'filter=~"$filter"'
_DIMENSION_SEL = 'filter=~"$filter", dimension=~"$dimension"'
_DIMENSION_OR_OVERALL_SEL = 'filter=~"$filter", dimension=~"$dimension|overall"'  # drift series include overall

FILTER_VAR = ("filter", "label_values(distillery_inference_articles_total, filter)")
DIMENSION_VAR = ("dimension", 'label_values(distillery_inference_score_count{filter=~"$filter"}, dimension)')


def _overview_throughput() -> Row:
    rpc_rate = [_q(_rate(f"distillery_{s}_rpc_requests_total", "method"), f"{s} {{{{method}}}}") for s in SERVICES]
    return (
        "Throughput",
        (
            PanelSpec("gRPC requests/s by service and method", tuple(rpc_rate), unit="reqps"),
            PanelSpec(
                "Articles scored/s by filter and cascade stage",
                (_q(_rate("distillery_inference_articles_total", "filter, stage"), "{{filter}} {{stage}}"),),
                unit="ops",
            ),
            PanelSpec(
                "Kafka messages consumed/s per stage and topic",
                tuple(_q(_rate(f"distillery_{s}_kafka_consumed_total", "topic"), f"{s} {{{{topic}}}}")
                      for s in KAFKA_STAGES),
                unit="ops",
            ),
            PanelSpec(
                "Kafka messages produced/s per stage and topic",
                tuple(_q(_rate(f"distillery_{s}_kafka_produced_total", "topic"), f"{s} {{{{topic}}}}")
                      for s in KAFKA_STAGES),
                unit="ops",
            ),
            PanelSpec(
                "Prefilter decisions/s by outcome",
                (_q(_rate("distillery_prefilter_decisions_total", "outcome"), "{{outcome}}"),),
                unit="ops",
            ),
            PanelSpec(
                "Tokens/s through the students",
                (_q(_rate("distillery_inference_tokens_total", "filter, stage"), "{{filter}} {{stage}}"),),
                unit="short",
            ),
        ),
    )


def _overview_latency() -> Row:
    p50 = [_q(_quantile(0.5, f"distillery_{s}_rpc_seconds", "method"), f"{s} {{{{method}}}} p50") for s in SERVICES]
    p99 = [_q(_quantile(0.99, f"distillery_{s}_rpc_seconds", "method"), f"{s} {{{{method}}}} p99") for s in SERVICES]
    return (
        "Latency",
        (
            PanelSpec("gRPC latency p50", tuple(p50), unit="s"),
            PanelSpec("gRPC latency p99", tuple(p99), unit="s"),
            PanelSpec(
                "Scoring phases p99 (queue, preprocess, inference, postprocess, total)",
                (_q(_quantile(0.99, "distillery_inference_phase_seconds", "phase"), "{{phase}}"),),
                unit="s",
            ),
            PanelSpec(
                "Batch size p50 / p99",
                (
                    _q(_quantile(0.5, "distillery_inference_batch_size", "stage"), "{{stage}} p50"),
                    _q(_quantile(0.99, "distillery_inference_batch_size", "stage"), "{{stage}} p99"),
                ),
            ),
        ),
    )


def _overview_errors_backlog() -> Row:
    errors = [
        _q(_rate(f"distillery_{s}_rpc_requests_total", "method, code", 'code!="OK"'), f"{s} {{{{method}}}} {{{{code}}}}")
        for s in SERVICES
    ]
    return (
        "Errors and backlog",
        (
            PanelSpec("gRPC errors/s (code != OK)", tuple(errors), unit="reqps"),
            PanelSpec(
                "Work refused (overload, deadline)",
                (_q(_rate("distillery_inference_rejected_total", "reason"), "{{reason}}"),),
                unit="ops",
            ),
            PanelSpec(
                "Kafka consumer lag per stage and topic",
                tuple(_q(f"sum by (topic) (distillery_{s}_kafka_consumer_lag_messages)", f"{s} {{{{topic}}}}")
                      for s in KAFKA_STAGES),
            ),
            PanelSpec(
                "Dead-lettered messages (last hour) per stage and topic",
                tuple(_q(f"sum by (topic) (increase(distillery_{s}_kafka_dead_letters_total[1h]))",
                         f"{s} {{{{topic}}}}") for s in KAFKA_STAGES),
            ),
            PanelSpec(
                "Kafka batch p99 (process, produce, flush, commit)",
                tuple(_q(_quantile(0.99, f"distillery_{s}_kafka_batch_seconds", "job"), f"{s}")
                      for s in KAFKA_STAGES),
                unit="s",
            ),
            PanelSpec(
                "Inference queue depth",
                (_q("sum by (filter, stage) (distillery_inference_queue_depth)", "{{filter}} {{stage}}"),),
            ),
            PanelSpec(
                "Services up",
                (_q('up{job=~"distillery-.*"}', "{{job}} {{instance}}"),),
                kind="stat",
            ),
        ),
    )


def overview() -> DashboardSpec:
    return DashboardSpec(
        uid="distillery-overview",
        title="Distillery / Overview",
        description="Throughput per stage, latency p50/p99, errors and backlog of the four services.",
        rows=(_overview_throughput(), _overview_latency(), _overview_errors_backlog()),
    )


def _filter_quality_student_oracle() -> Row:
    sel = _FILTER_SEL
    return (
        "Student vs oracle (audit labels)",
        (
            PanelSpec(
                "Live MAE by filter vs target",
                (
                    _q("distillery:inference_audit_mae:avg{" + sel + "}", "{{filter}} MAE"),
                    _q("distillery:inference_target_mae:max{" + sel + "}", "{{filter}} target"),
                ),
                description="Mean absolute error of the calibrated student scores against oracle audit "
                "labels (sliding window of the last audit_window labels per dimension, averaged over "
                "dimensions) and the spec's student.target_mae. Alert: DistilleryStudentMaeAboveTarget.",
            ),
            PanelSpec(
                "Live MAE by dimension",
                (_q("distillery:inference_audit_mae_dimension:avg{" + sel + "}", "{{filter}} {{dimension}}"),),
            ),
            PanelSpec(
                "Interval coverage on audits (6 h)",
                (_q("distillery:inference_audit_interval_coverage:ratio_6h{" + sel + "}", "{{filter}}"),),
                unit="percentunit",
                description="Share of audit oracle scores inside the student's conformal interval; "
                "calibrated for 90%. Alert below 80%: DistilleryAuditIntervalCoverageLow.",
            ),
            PanelSpec(
                "Absolute error p50 / p90 by reason (audit, uncertain)",
                (
                    _q(_quantile(0.5, "distillery_inference_audit_abs_error", "filter, reason", sel),
                       "{{filter}} {{reason}} p50"),
                    _q(_quantile(0.9, "distillery_inference_audit_abs_error", "filter, reason", sel),
                       "{{filter}} {{reason}} p90"),
                ),
                description="Uncertain articles are the hard cases: their error is expected above the "
                "audit (random sample) error.",
            ),
            PanelSpec(
                "Oracle labels matched / unmatched per hour",
                (
                    _q("sum by (filter, reason) (increase(distillery_inference_audit_matched_total{" + sel
                       + "}[1h]))", "{{filter}} {{reason}} matched"),
                    _q("sum by (filter, reason) (increase(distillery_inference_audit_unmatched_total{" + sel
                       + "}[1h]))", "{{filter}} {{reason}} unmatched"),
                ),
                description="Unmatched: the prediction expired, was evicted, was lost in a restart or "
                "belongs to another replica.",
            ),
            PanelSpec(
                "Predictions waiting for their oracle label",
                (_q("sum by (job) (distillery_inference_audit_pending_predictions)", "{{job}}"),),
            ),
        ),
    )


def _filter_quality_uncertainty() -> Row:
    sel = _FILTER_SEL
    return (
        "Uncertainty",
        (
            PanelSpec(
                "Uncertain rate by filter",
                (_q("distillery:inference_uncertain:ratio_rate1h" + "{" + sel + "}", "{{filter}}"),),
                unit="percentunit",
                description="Share of scored articles flagged uncertain (interval too wide or ensemble "
                "disagreement), 1 h window (recording rule).",
            ),
            PanelSpec(
                "Uncertain articles/s",
                (_q(_rate("distillery_inference_uncertain_total", "filter", sel), "{{filter}}"),),
                unit="ops",
            ),
        ),
    )


def _filter_quality_audits_active_learning() -> Row:
    sel = _FILTER_SEL
    return (
        "Audits and active learning",
        (
            PanelSpec(
                "Articles sent to the oracle by reason (audit, uncertain)",
                (_q(_rate("distillery_inference_oracle_requests_total", "filter, reason", sel),
                    "{{filter}} {{reason}}"),),
                unit="ops",
            ),
            PanelSpec(
                "Models served by filter and stage",
                (_q("sum by (filter, stage) (distillery_inference_models_loaded{" + sel + "})",
                    "{{filter}} {{stage}}"),),
                kind="stat",
            ),
            PanelSpec(
                "Training jobs running / finished by state (last 24 h)",
                (
                    _q("sum(distillery_trainer_jobs_running)", "running"),
                    _q("sum by (state) (increase(distillery_trainer_jobs_finished_total[24h]))", "{{state}}"),
                ),
            ),
            PanelSpec(
                "Model promotions (last 24 h)",
                (_q("sum(increase(distillery_trainer_promotions_total[24h]))", "promotions"),),
                kind="stat",
            ),
            PanelSpec(
                "Model reloads by outcome",
                (_q("sum by (filter, outcome) (increase(distillery_inference_model_reloads_total{" + sel
                    + "}[1h]))", "{{filter}} {{outcome}}"),),
            ),
        ),
    )


def filter_quality() -> DashboardSpec:
    return DashboardSpec(
        uid="distillery-filter-quality",
        title="Distillery / Filter quality",
        description="Live student quality: student-vs-oracle MAE from audit labels against the filter's target, "
        "interval coverage, uncertain rate, oracle audits and model reloads per filter.",
        variables=(FILTER_VAR,),
        rows=(
            _filter_quality_student_oracle(),
            _filter_quality_uncertainty(),
            _filter_quality_audits_active_learning(),
        ),
    )


def _score_distributions_distributions() -> Row:
    sel = _DIMENSION_SEL
    return (
        "Distributions",
        (
            PanelSpec(
                "Dimension score histogram (share per band)",
                (_q("sum by (le) (increase(distillery_inference_score_bucket{" + sel + "}[$__rate_interval]))",
                    "{{le}}"),),
                kind="heatmap",
                width=24,
            ),
            PanelSpec(
                "Dimension score median and p90",
                (
                    _q(_quantile(0.5, "distillery_inference_score", "filter, dimension", sel),
                       "{{filter}} {{dimension}} p50"),
                    _q(_quantile(0.9, "distillery_inference_score", "filter, dimension", sel),
                       "{{filter}} {{dimension}} p90"),
                ),
            ),
            PanelSpec(
                "Overall score median and p90",
                (
                    _q(_quantile(0.5, "distillery_inference_overall_score", "filter", 'filter=~"$filter"'),
                       "{{filter}} p50"),
                    _q(_quantile(0.9, "distillery_inference_overall_score", "filter", 'filter=~"$filter"'),
                       "{{filter}} p90"),
                ),
            ),
        ),
    )


def _score_distributions_drift() -> Row:
    sel = _DIMENSION_SEL
    return (
        "Drift",
        (
            PanelSpec(
                "Share of high scores (>= 7) now vs 7 days ago",
                (
                    _q("distillery:inference_score_high:ratio_rate1h{" + sel + "}",
                       "{{filter}} {{dimension}} now"),
                    _q("distillery:inference_score_high:ratio_rate1h{" + sel + "} offset 7d",
                       "{{filter}} {{dimension}} 7d ago"),
                ),
                unit="percentunit",
            ),
            PanelSpec(
                "Median shift vs the previous week",
                (_q("distillery:inference_score_median:1h{" + sel + "} - "
                    "distillery:inference_score_median:1h{" + sel + "} offset 7d",
                    "{{filter}} {{dimension}}"),),
            ),
            PanelSpec(
                "PSI of the last hour vs the previous 7 days",
                (_q("distillery:inference_score:psi{" + sel + "}", "{{filter}} {{dimension}}"),),
                description="Population stability index of the live score bands, last hour against the "
                            "previous week (< 0.1 stable, 0.1-0.25 moderate, > 0.25 drift). The drift "
                            "alert uses it only for models registered without a training reference.",
            ),
        ),
    )


def _score_distributions_drift_training_distribution() -> Row:
    sel_overall = _DIMENSION_OR_OVERALL_SEL
    return (
        "Drift against the training distribution",
        (
            PanelSpec(
                "PSI vs the training reference",
                (_q("distillery:inference_score:psi_reference{" + sel_overall + "}",
                    "{{filter}} {{dimension}}"),),
                description="Population stability index of the last hour's score bands against the served "
                            "model's reference: its calibrated predictions on its validation+test split, "
                            "stored at registration (dimension \"overall\" is the overall score). "
                            "< 0.1 stable, 0.1-0.25 moderate, > 0.25 drift (DistilleryScoreDrift).",
                width=24,
            ),
            PanelSpec(
                "Live share per band (last hour)",
                (_q("distillery:inference_score_band_live:ratio_1h{" + sel_overall + "}",
                    "{{filter}} {{dimension}} {{band}}"),),
                unit="percentunit",
                description="Share of live calibrated scores in each band (0-2, 3-4, 5-6, 7-8, 9-10) over "
                            "the last hour.",
            ),
            PanelSpec(
                "Training reference share per band",
                (_q("distillery:inference_reference_score_band:ratio{" + sel_overall + "}",
                    "{{filter}} {{dimension}} {{band}}"),),
                unit="percentunit",
                description="The served model's reference shares per band (empty for models registered "
                            "without one); a step marks a hot reload of a new version.",
            ),
            PanelSpec(
                "Live minus reference share per band",
                (_q("distillery:inference_score_band_live:ratio_1h{" + sel_overall + "} - "
                    "distillery:inference_reference_score_band:ratio{" + sel_overall + "}",
                    "{{filter}} {{dimension}} {{band}}"),),
                unit="percentunit",
                description="Positive: the band is more frequent live than on the model's own "
                            "validation+test predictions.",
                width=24,
            ),
        ),
    )


def score_distributions() -> DashboardSpec:
    return DashboardSpec(
        uid="distillery-score-distributions",
        title="Distillery / Score distributions",
        description="Calibrated score distribution per filter and dimension, and its drift.",
        variables=(FILTER_VAR, DIMENSION_VAR),
        rows=(
            _score_distributions_distributions(),
            _score_distributions_drift(),
            _score_distributions_drift_training_distribution(),
        ),
    )


def _prefilter_decisions() -> Row:
    sel = _FILTER_SEL
    return (
        "Decisions",
        (
            PanelSpec(
                "Pass rate by filter",
                (_q(f'sum by (filter) (rate(distillery_prefilter_decisions_total{{outcome="passed", {sel}}}'
                    f"[$__rate_interval])) / sum by (filter) (rate(distillery_prefilter_decisions_total"
                    f"{{{sel}}}[$__rate_interval]))", "{{filter}}"),),
                unit="percentunit",
                description="Share of articles passed to the students (the origin's filters passed 3-30%).",
            ),
            PanelSpec(
                "Block reasons/s by filter",
                (_q(_rate("distillery_prefilter_decisions_total", "filter, reason",
                          f'outcome="blocked", {sel}'), "{{filter}} {{reason}}"),),
                unit="ops",
            ),
            PanelSpec(
                "Top block reasons (last 24 h)",
                (_q(f'topk(10, sum by (filter, reason) (increase(distillery_prefilter_decisions_total'
                    f'{{outcome="blocked", {sel}}}[24h])))', "{{filter}} {{reason}}"),),
                kind="table",
            ),
            PanelSpec(
                "Invalid articles/s by source",
                (_q(_rate("distillery_prefilter_invalid_articles_total", "source"), "{{source}}"),),
                unit="ops",
            ),
        ),
    )


def _prefilter_measured_error_rates() -> Row:
    sel = _FILTER_SEL
    return (
        "Measured error rates (labelled regression set, `distillery prefilter evaluate`)",
        (
            PanelSpec(
                "False negative rate by filter (relevant articles blocked)",
                (_q(f"max by (filter) (distillery_prefilter_false_negative_ratio{{{sel}}})", "{{filter}}"),),
                unit="percentunit",
                description="From the last evaluation run, exported as gauges through the node-exporter "
                "textfile collector (services/prefilter/evaluate.py). Target: below 10%.",
            ),
            PanelSpec(
                "False positive rate by filter (irrelevant articles passed)",
                (_q(f"max by (filter) (distillery_prefilter_false_positive_ratio{{{sel}}})", "{{filter}}"),),
                unit="percentunit",
            ),
            PanelSpec(
                "Evaluated pass rate and labelled articles",
                (
                    _q(f"max by (filter) (distillery_prefilter_eval_pass_ratio{{{sel}}})", "{{filter}} pass"),
                    _q(f"max by (filter, label) (distillery_prefilter_eval_articles{{{sel}}})",
                       "{{filter}} {{label}}"),
                ),
                kind="table",
            ),
        ),
    )


def _prefilter_latency() -> Row:
    return (
        "Latency",
        (
            PanelSpec(
                "Rule-engine time per article p50 / p99",
                (
                    _q(_quantile(0.5, "distillery_prefilter_article_seconds", "job"), "p50"),
                    _q(_quantile(0.99, "distillery_prefilter_article_seconds", "job"), "p99"),
                ),
                unit="s",
            ),
            PanelSpec(
                "Check RPC latency p50 / p99",
                (
                    _q(_quantile(0.5, "distillery_prefilter_rpc_seconds", "method"), "{{method}} p50"),
                    _q(_quantile(0.99, "distillery_prefilter_rpc_seconds", "method"), "{{method}} p99"),
                ),
                unit="s",
            ),
            PanelSpec(
                "Articles per request / Kafka batch (p50)",
                (_q(_quantile(0.5, "distillery_prefilter_batch_articles", "source"), "{{source}}"),),
            ),
        ),
    )


def prefilter() -> DashboardSpec:
    return DashboardSpec(
        uid="distillery-prefilter",
        title="Distillery / Prefilter",
        description="Pass rate, block reasons, rule-engine latency and invalid input of the prefilter.",
        variables=(("filter", "label_values(distillery_prefilter_decisions_total, filter)"),),
        rows=(_prefilter_decisions(), _prefilter_measured_error_rates(), _prefilter_latency()),
    )


def _oracle_cost_spend() -> Row:
    sel = _FILTER_SEL
    return (
        "Spend",
        (
            PanelSpec(
                "Spend per hour by filter, provider and model",
                (_q(f"sum by (filter, provider, model) (increase(distillery_oracle_cost_usd_total{{{sel}}}[1h]))",
                    "{{filter}} {{provider}} {{model}}"),),
                unit="currencyUSD",
            ),
            PanelSpec(
                "Spend in the selected range",
                (_q(f"sum by (filter) (increase(distillery_oracle_cost_usd_total{{{sel}}}[$__range]))",
                    "{{filter}}"),),
                kind="stat",
                unit="currencyUSD",
            ),
            PanelSpec(
                "Budget remaining by filter",
                (_q(f"min by (filter) (distillery_oracle_budget_remaining_usd{{{sel}}})", "{{filter}}"),),
                kind="stat",
                unit="currencyUSD",
            ),
            PanelSpec(
                "Tokens/s by provider, model and kind",
                (_q(_rate("distillery_oracle_tokens_total", "provider, model, kind"),
                    "{{provider}} {{model}} {{kind}}"),),
            ),
        ),
    )


def _oracle_cost_calls() -> Row:
    return (
        "Calls",
        (
            PanelSpec(
                "Cache hit rate",
                (_q('sum(rate(distillery_oracle_requests_total{outcome="cached"}[$__rate_interval])) / '
                    'sum(rate(distillery_oracle_requests_total{outcome=~"cached|ok|repaired"}'
                    "[$__rate_interval]))", "hit rate"),),
                unit="percentunit",
                description="Labels served from the label store or response cache, over all labels served.",
            ),
            PanelSpec(
                "Cache hits/s by source",
                (_q(_rate("distillery_oracle_cache_hits_total", "source"), "{{source}}"),),
                unit="ops",
            ),
            PanelSpec(
                "Provider attempts/s by outcome",
                (_q(_rate("distillery_oracle_requests_total", "provider, model, outcome"),
                    "{{provider}} {{model}} {{outcome}}"),),
                unit="ops",
            ),
            PanelSpec(
                "Retries/s by provider and reason",
                (_q(_rate("distillery_oracle_retries_total", "provider, reason"), "{{provider}} {{reason}}"),),
                unit="ops",
            ),
            PanelSpec(
                "Provider latency p50 / p99",
                (
                    _q(_quantile(0.5, "distillery_oracle_request_latency_seconds", "provider"),
                       "{{provider}} p50"),
                    _q(_quantile(0.99, "distillery_oracle_request_latency_seconds", "provider"),
                       "{{provider}} p99"),
                ),
                unit="s",
            ),
            PanelSpec(
                "Gateway overhead p99 (beyond the provider call)",
                (_q(_quantile(0.99, "distillery_oracle_overhead_seconds", "job"), "p99"),),
                unit="s",
            ),
            PanelSpec(
                "Provider calls in flight",
                (_q("sum by (provider) (distillery_oracle_in_flight_requests)", "{{provider}}"),),
            ),
            PanelSpec(
                "Articles the oracle could not label (last hour)",
                (_q("sum by (provider, reason) (increase(distillery_oracle_dead_letters_total[1h]))",
                    "{{provider}} {{reason}}"),),
            ),
        ),
    )


def oracle_cost() -> DashboardSpec:
    return DashboardSpec(
        uid="distillery-oracle-cost",
        title="Distillery / Oracle cost",
        description="Oracle spend by filter, provider and model; tokens, cache hit rate, budget, latency, retries.",
        variables=(("filter", "label_values(distillery_oracle_cost_usd_total, filter)"),),
        rows=(_oracle_cost_spend(), _oracle_cost_calls()),
    )


def all_dashboards() -> list[DashboardSpec]:
    return [overview(), filter_quality(), score_distributions(), prefilter(), oracle_cost()]


def _panel(spec: PanelSpec):
    builder = {
        "timeseries": timeseries.Panel,
        "stat": stat.Panel,
        "heatmap": heatmap.Panel,
        "table": table.Panel,
    }[spec.kind]()
    builder = builder.title(spec.title).datasource(DATASOURCE).height(spec.height).span(spec.width)
    if spec.description:
        builder = builder.description(spec.description)
    if spec.kind in ("timeseries", "stat", "table"):
        builder = builder.unit(spec.unit)
    for i, q in enumerate(spec.queries):
        target = Dataquery().expr(q.expr).ref_id(chr(ord("A") + i)).datasource(DATASOURCE)
        if q.legend:
            target = target.legend_format(q.legend)
        if spec.kind == "heatmap":
            target = target.format(PromQueryFormat.HEATMAP)
        builder = builder.with_target(target)
    return builder


def to_grafana(spec: DashboardSpec) -> dict:
    """Build the Grafana dashboard JSON model of ``spec``."""
    builder = (
        gd.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(list(spec.tags))
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .editable()
    )
    for name, query in spec.variables:
        builder = builder.with_variable(
            gd.QueryVariable(name)
            .label(name)
            .query(query)
            .datasource(DATASOURCE)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .refresh(gm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
    for row_title, panels in spec.rows:
        builder = builder.with_row(gd.Row(row_title))
        for panel in panels:
            builder = builder.with_panel(_panel(panel))
    return json.loads(JSONEncoder(sort_keys=True, indent=2).encode(builder.build()))


def render_json(spec: DashboardSpec) -> str:
    return json.dumps(to_grafana(spec), indent=2, sort_keys=True) + "\n"
