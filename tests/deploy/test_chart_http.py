"""The chart exposes the inference service's HTTP/JSON port (container, Service, NetworkPolicy, env), and
turns it off when httpPort is 0."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("chart_helpers", Path(__file__).with_name("test_chart.py"))
chart = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chart)


def _inference(docs, kind):
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith("inference")]


def test_inference_http_port_is_exposed():
    docs = chart.render(chart.DEFAULTS)
    [deploy] = _inference(docs, "Deployment")
    [container] = deploy["spec"]["template"]["spec"]["containers"]
    assert {"name": "http", "containerPort": 8054, "protocol": "TCP"} in container["ports"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DISTILLERY_INFERENCE_HTTP_PORT"] == "8054"
    [service] = _inference(docs, "Service")
    assert any(p["name"] == "http" and p["port"] == 8054 for p in service["spec"]["ports"])
    [policy] = _inference(docs, "NetworkPolicy")
    assert any(p["port"] == 8054 for rule in policy["spec"]["ingress"] for p in rule["ports"])


def test_http_port_zero_turns_it_off():
    values = {**chart.DEFAULTS, "services": {**chart.DEFAULTS.get("services", {}),
                                             "inference": {**chart.DEFAULTS.get("services", {}).get("inference", {}),
                                                           "httpPort": 0}}}
    docs = chart.render(values)
    [deploy] = _inference(docs, "Deployment")
    [container] = deploy["spec"]["template"]["spec"]["containers"]
    assert all(p["name"] != "http" for p in container["ports"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DISTILLERY_INFERENCE_HTTP_PORT"] == "-1"
