"""Pure parts of the stage plumbing: per-record results of a batch, per-service metrics, lag series upkeep."""

from __future__ import annotations

from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import REGISTRY

from distillery.bus.dlq import OutMessage
from distillery.bus.lag import publish
from distillery.bus.metrics import stage_metrics
from distillery.bus.stage import Stage


class _Echo(Stage):
    def process(self, record):
        if record.value == b"poison":
            raise ValueError("cannot decode")
        yield OutMessage("out", record.key, record.value.upper(), [])


def _record(offset, value):
    return ConsumerRecord("in", 0, -1, offset, 0, 0, b"k", value, [], None, -1, -1, -1)


def test_a_poison_record_becomes_its_exception_and_the_rest_of_the_batch_is_processed():
    stage = _Echo(service="unitbus", bootstrap="127.0.0.1:1", group_id="g", input_topics=["in"])
    results = stage.process_batch([_record(0, b"a"), _record(1, b"poison"), _record(2, b"b")])
    assert len(results) == 3  # one result per record, in order
    assert [m.value for m in results[0]] == [b"A"] and [m.value for m in results[2]] == [b"B"]
    assert isinstance(results[1], ValueError)


def test_stage_metrics_are_one_set_per_service():
    assert stage_metrics("unitbus") is stage_metrics("unitbus")
    assert stage_metrics("unitbus2") is not stage_metrics("unitbus")


def _lag(group, topic, partition):
    return REGISTRY.get_sample_value("distillery_trainer_consumer_group_lag_messages",
                                     {"group": group, "topic": topic, "partition": str(partition)})


def test_lag_series_no_longer_measured_are_removed():
    exported = publish({("unit-g", "articles.raw", 0): 5, ("unit-g", "articles.raw", 1): 7}, set())
    assert (_lag("unit-g", "articles.raw", 0), _lag("unit-g", "articles.raw", 1)) == (5, 7)
    exported = publish({("unit-g", "articles.raw", 1): 2}, exported)  # partition 0 was taken away
    assert _lag("unit-g", "articles.raw", 0) is None
    assert _lag("unit-g", "articles.raw", 1) == 2
    publish({}, exported)
    assert _lag("unit-g", "articles.raw", 1) is None
