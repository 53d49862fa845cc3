"""Find the metric names a PromQL expression reads, and substitute Grafana's template variables."""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_NAME = re.compile(r"(?<![A-Za-z0-9_:])(distillery_[a-zA-Z0-9_]+)(?![A-Za-z0-9_:(])")
_RECORDED = re.compile(r"(?<![A-Za-z0-9_:])(distillery:[a-zA-Z0-9_:]+)")

# What Grafana puts in place of its built-in variables, for running a panel's query against Prometheus.
GRAFANA_BUILTINS = {
    "$__rate_interval": "2m",
    "$__interval": "30s",
    "$__range": "1h",
}


def metric_names(expr: str) -> set[str]:
    """``distillery_*`` sample names read by ``expr`` (label values, strings and ranges are ignored)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("{}", text)
    text = _RANGE.sub("[]", text)
    return set(_NAME.findall(text))


def recorded_names(expr: str) -> set[str]:
    """Recording-rule names (``distillery:...``) an expression reads."""
    return set(_RECORDED.findall(_STRING.sub('""', expr)))


def substitute(expr: str, variables: dict[str, str] | None = None) -> str:
    """Replace Grafana variables: built-ins by fixed windows, ``$var`` by ``variables[var]`` (default ``.*``)."""
    for key, value in GRAFANA_BUILTINS.items():
        expr = expr.replace(key, value)
    variables = variables or {}
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: variables.get(m.group(1), ".*"), expr)
