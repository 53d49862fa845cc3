"""The distributed system closes its loop on the chart's own pods (tests/cluster/scenario.py says how).

One scenario run (module fixture, a few minutes) and one test per promise, so a failure names the promise.
It writes benchmarks/results/cluster_loop.json and .md (the README's loop time comes from there).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from . import scenario
from .scenario import STREAM_TOPICS

# the scenario runs in the first test's setup; make test-cluster caps the whole run at 19 minutes
pytestmark = pytest.mark.timeout(1080)


@pytest.fixture(scope="module")
def result() -> dict:
    out = scenario.run(Path(tempfile.mkdtemp(prefix=f"dcl{os.getpid()}-", dir="/var/tmp")))
    scenario.write_results(out)
    return out


def test_every_article_is_decided_and_every_candidate_scored(result):
    keys = result["topic_keys"]
    assert keys["articles.raw"] == result["articles"] == 3000
    assert result["articles_not_decided"] == 0
    assert keys["articles.candidates"] > 0 and result["candidates_not_scored"] == 0
    assert keys["articles.candidates"] + keys["articles.rejected"] == 3000
    assert keys["articles.raw.dlq"] == keys["articles.candidates.dlq"] == keys["oracle.requests.dlq"] == 0


def test_the_chart_job_provisions_the_stream_topics_with_partitions(result):
    small = {t: n for t, n in result["topic_partitions"].items() if t in STREAM_TOPICS and n < 4}
    assert not small, f"stream topics with fewer than 4 partitions: {small}"


def test_labels_land_in_postgresql_one_per_label_record(result):
    assert result["labels_in_postgres"] == result["topic_keys"]["oracle.labels"] > 0
    assert result["topic_keys"]["oracle.labels"] >= result["topic_keys"]["oracle.requests"]


def test_the_model_is_registered_on_s3_promoted_and_announced(result):
    assert result["registry_objects_on_s3"] > 0
    assert result["topic_keys"]["models.events"] >= 1


def test_one_pod_of_every_deployment_killed_mid_stream_is_restarted(result):
    owners = {name.rsplit("-", 1)[0] for name in result["killed"]}
    assert {o.rsplit("distillery-", 1)[1] for o in owners} == {"prefilter", "oracle-gateway", "trainer", "inference"}
    assert all(result["restarts"].get(name, 0) >= 1 for name in result["killed"])


def test_the_trainer_exports_the_broker_measured_lag_of_every_stage(result):
    assert {"distillery-prefilter", "distillery-oracle-gateway", "inference"} <= set(result["lag_exported_for_groups"])


def test_grpc_calls_to_the_inference_service_reach_both_replicas(result):
    spread = result["grpc_calls_per_replica"]
    assert len(spread) == 2
    assert sum(spread.values()) == result["grpc_calls"]
    assert all(n > 0 for n in spread.values()), f"calls per replica: {spread} (Service {result['grpc_service']})"


def test_two_gateways_share_one_rate_limit_and_one_budget_through_redis(result):
    # both replicas labelled (and spent) before one was killed
    assert all(v > 0 for v in result["gateway_cost_before_kill_usd"].values()), result["gateway_cost_before_kill_usd"]
    # one limiter schedule (its windows) and one budget counter in Redis, not one per replica
    assert result["redis_limiter_keys"] and all(":llm:" in k for k in result["redis_limiter_keys"])
    assert len(result["redis_budget_keys"]) == 1
    # together they stayed under the provider's limit: unshared, two replicas would send twice the rate
    # and about half their requests would get 429s; a few at window edges are a provider's normal
    assert result["llm_rate_limited_429"] <= 0.1 * result["llm_requests"], result
    spent = result["label_cost_in_postgres_usd"]
    assert spent > 0
    # the provider billed every stored label (and, for a call answered to the replica killed before it stored
    # the label, the redelivered call again); the one Redis counter holds both replicas' spend
    billed = result["llm_billed_usd"]
    assert spent * (1 - 1e-6) <= billed <= spent * 1.05
    assert spent * (1 - 1e-6) <= result["redis_budget_usd"] <= billed * 1.05


def test_every_module_the_services_imported_is_installed_by_their_images(result):
    # the pods run from the project's virtualenv (every extra); an image holds one extra
    assert not result["image_import_gaps"], result["image_import_gaps"]
