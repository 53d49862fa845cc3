"""A real Prometheus server scrapes the four services, started as real processes; through its HTTP API the
test asserts that each service's key metrics arrive and that every dashboard query is valid and, when the
metrics it reads have been exported, returns data.

Tolerant of unfinished services: a service that does not start is reported, not failed on, as long as at
least one starts. Skips (with the reason) when the Debian ``prometheus`` package is not installed.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import grpc
import pytest
import yaml

from distillery.dashboards.build import all_dashboards
from distillery.dashboards.promql import metric_names, substitute
from distillery.runtime.supervisor import ServiceStartError, start_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROMETHEUS = shutil.which("prometheus")
# supervisor name -> metric prefix
SERVICES = {"prefilter": "prefilter", "oracle_gateway": "oracle", "trainer": "trainer", "inference": "inference"}
ARTICLE = {
    "title": "Community solar cooperative opens in rural town",
    "text": "Residents of the town opened a community-owned solar cooperative that supplies 400 homes. " * 8,
    "url": "https://example.org/solar-coop",
    "source": "example.org",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def _call_once(name: str, address: str) -> None:
    """One real RPC per service so that the interceptor's metrics have samples; any status is fine."""
    from distillery.v1 import (
        article_pb2,
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

    article = article_pb2.Article(**ARTICLE)
    short = article_pb2.Article(title="Phone deal", text="Buy the new phone today.", url="https://example.org/deal")
    ref = common_pb2.FilterRef(name="uplifting", version=1)
    unknown = common_pb2.FilterRef(name="no_such_filter", version=1)
    with grpc.insecure_channel(address) as channel:
        calls = {
            "prefilter": lambda: prefilter_pb2_grpc.PrefilterServiceStub(channel).Check(
                prefilter_pb2.CheckRequest(articles=[article], filters=[ref]), timeout=20),
            "oracle_gateway": lambda: oracle_pb2_grpc.OracleServiceStub(channel).Label(
                oracle_pb2.LabelRequest(article=article, filter=ref), timeout=20),
            "trainer": lambda: trainer_pb2_grpc.TrainerServiceStub(channel).ListModels(
                trainer_pb2.ListModelsRequest(filter=ref), timeout=20),
            "inference": lambda: scoring_pb2_grpc.ScoringServiceStub(channel).Score(
                scoring_pb2.ScoreRequest(article=article, filters=[ref]), timeout=20),
        }
        # Calls that fail on purpose (unknown filter or job) and a short article the prefilter blocks, so
        # that error and block panels have data too.
        bad = {
            "prefilter": lambda: prefilter_pb2_grpc.PrefilterServiceStub(channel).Check(
                prefilter_pb2.CheckRequest(articles=[short], filters=[ref]), timeout=20),
            "oracle_gateway": lambda: oracle_pb2_grpc.OracleServiceStub(channel).Label(
                oracle_pb2.LabelRequest(article=article, filter=unknown), timeout=20),
            "trainer": lambda: trainer_pb2_grpc.TrainerServiceStub(channel).GetJob(
                trainer_pb2.GetJobRequest(job_id="no-such-job"), timeout=20),
            "inference": lambda: scoring_pb2_grpc.ScoringServiceStub(channel).Score(
                scoring_pb2.ScoreRequest(article=article, filters=[unknown]), timeout=20),
        }
        extra = {
            "prefilter": lambda: prefilter_pb2_grpc.PrefilterServiceStub(channel).Check(
                prefilter_pb2.CheckRequest(articles=[article], filters=[unknown]), timeout=20),
        }
        for call in (calls[name], bad[name], extra.get(name), calls[name]):
            try:
                if call is not None:
                    call()
            except grpc.RpcError:
                pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if PROMETHEUS is None:
        pytest.skip("prometheus server not installed (Debian package `prometheus`; `make system-deps`)")
    work = tmp_path_factory.mktemp("prom-live")
    started, failed = {}, {}
    for name in SERVICES:
        try:
            started[name] = start_service(
                name, args=["--state-dir", str(work / name)], log_dir=work / "logs", timeout=120
            )
        except (ServiceStartError, OSError) as exc:
            failed[name] = str(exc)[-800:]
    prom = None
    try:
        if not started:
            pytest.skip(f"no service could start: {failed}")
        for name, svc in started.items():
            _call_once(name, svc.address)
        port = _free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": f"distillery-{SERVICES[name]}",
                    "static_configs": [{"targets": [f"127.0.0.1:{svc.metrics_port}"]}],
                }
                for name, svc in started.items()
            ],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        with open(work / "prometheus.log", "wb") as log:
            prom = subprocess.Popen(
                [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                targets = _get(f"{base}/api/v1/targets")["data"]["activeTargets"]
                if len(targets) == len(started) and all(t["health"] == "up" for t in targets):
                    break
            except OSError:
                pass
            if prom.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Prometheus never scraped every service: {(work / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.5)
        # A few scrapes so that rate() has two samples; one more call between them.
        time.sleep(3)
        for name, svc in started.items():
            _call_once(name, svc.address)
        time.sleep(3)
        yield {"base": base, "started": started, "failed": failed}
    finally:
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(15)
            except subprocess.TimeoutExpired:
                prom.kill()
        for svc in started.values():
            svc.stop()


def _query(base: str, expr: str) -> dict:
    return _get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


def test_every_started_service_is_up_and_reports_rpc_metrics(stack):
    base = stack["base"]
    if stack["failed"]:
        print("services that did not start (not failed on):", json.dumps(stack["failed"], indent=1))
    for name in stack["started"]:
        short = SERVICES[name]
        up = _query(base, f'up{{job="distillery-{short}"}}')["data"]["result"]
        assert up and up[0]["value"][1] == "1", f"{name} not up"
        for metric in (f"distillery_{short}_rpc_requests_total", f"distillery_{short}_rpc_seconds_count"):
            result = _query(base, metric)["data"]["result"]
            assert result, f"{metric} did not arrive in Prometheus"
            assert all("article" not in k for series in result for k in series["metric"]), "per-article label"


def test_every_exported_family_arrives(stack):
    """What each service serves on /metrics (distillery_* families with samples) is queryable in Prometheus."""
    base = stack["base"]
    names = set(_get(f"{base}/api/v1/label/__name__/values")["data"])
    for name in stack["started"]:
        short = SERVICES[name]
        own = {n for n in names if n.startswith(f"distillery_{short}_")}
        assert f"distillery_{short}_rpc_requests_total" in own


def test_every_dashboard_query_is_accepted_and_returns_data_when_its_metrics_exist(stack):
    base = stack["base"]
    present = set(_get(f"{base}/api/v1/label/__name__/values")["data"])
    empty = []
    for spec in all_dashboards():
        for title, expr in spec.queries():
            reply = _query(base, substitute(expr))
            assert reply["status"] == "success", f"{spec.uid} / {title}: {reply}"
            needed = metric_names(expr)
            if needed and needed <= present and not reply["data"]["result"]:
                empty.append(f"{spec.uid} / {title}: {expr}")
    assert not empty, "queries whose metrics exist but returned no data:\n" + "\n".join(empty)
