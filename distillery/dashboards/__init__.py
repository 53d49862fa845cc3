"""Monitoring as code: the metric catalog (static scan), Grafana dashboards and their generator."""

from distillery.dashboards.catalog import Catalog, MetricDef, scan
from distillery.dashboards.promql import metric_names, recorded_names, substitute

__all__ = ["Catalog", "MetricDef", "metric_names", "recorded_names", "scan", "substitute"]
