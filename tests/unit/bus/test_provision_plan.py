"""distillery.bus.provision.planned_topics: every topic the services use, with its partitions and retention."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from distillery.bus.provision import HOUR_MS, TopicsSettings, planned_topics
from distillery.bus.topics import MODELS_EVENTS, TOPICS, dlq


def _by_name(settings):
    return {spec.name: spec for spec in planned_topics(settings)}


def test_every_topic_and_a_dlq_for_each_stream_topic():
    plan = _by_name(TopicsSettings())
    streams = [t for t in TOPICS if t != MODELS_EVENTS]
    assert set(plan) == set(TOPICS) | {dlq(t) for t in streams}
    assert dlq(MODELS_EVENTS) not in plan  # the control topic has no dead letters


def test_partitions_replication_and_retention_from_the_settings():
    settings = TopicsSettings(partitions=12, control_partitions=1, replication_factor=3, retention_hours=24,
                              dlq_retention_hours=720)
    plan = _by_name(settings)
    assert plan["articles.raw"].partitions == 12 and plan["articles.raw.dlq"].partitions == 12
    assert plan[MODELS_EVENTS].partitions == 1  # ordered per filter, read by every replica
    assert {s.replication for s in plan.values()} == {3}
    assert plan["oracle.labels"].configs == {"retention.ms": str(24 * HOUR_MS)}
    assert plan["oracle.labels.dlq"].configs == {"retention.ms": str(720 * HOUR_MS)}


def test_zero_retention_leaves_the_brokers_default():
    plan = _by_name(TopicsSettings(retention_hours=0, dlq_retention_hours=0))
    assert all(spec.configs == {} for spec in plan.values())


def test_the_prefix_namespaces_every_topic_and_dlq():
    plan = _by_name(TopicsSettings(prefix="staging."))
    assert all(name.startswith("staging.") for name in plan)
    assert "staging.articles.scored.dlq" in plan


@pytest.mark.parametrize("bad", [{"partitions": 0}, {"replication_factor": 0}, {"retention_hours": -1}])
def test_impossible_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        TopicsSettings(**bad)
