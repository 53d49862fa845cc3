"""distillery.bus.dlq: a dead letter keeps the original bytes and headers and says why, never where."""

from __future__ import annotations

from kafka.consumer.fetcher import ConsumerRecord

from distillery.bus import headers as h
from distillery.bus.dlq import dead_letter


def _record(topic="articles.raw", key=b"a1", value=b"\x00\xffnot-a-proto", headers=None, partition=3, offset=41):
    return ConsumerRecord(topic, partition, -1, offset, 0, 0, key, value,
                          headers if headers is not None else [(h.TRACE_ID, b"trace-1")], None, -1, -1, -1)


def test_dead_letter_goes_to_the_topics_dlq_with_key_value_and_provenance():
    out = dead_letter(_record(), ValueError("cannot decode Article"), attempts=2)
    assert out.topic == "articles.raw.dlq"
    assert (out.key, out.value) == (b"a1", b"\x00\xffnot-a-proto")
    assert h.header(out.headers, h.TRACE_ID) == "trace-1"  # original headers kept
    assert h.header(out.headers, h.ERROR) == "ValueError: cannot decode Article"
    assert h.header(out.headers, h.SOURCE_TOPIC) == "articles.raw"
    assert h.header(out.headers, h.SOURCE_PARTITION) == "3"
    assert h.header(out.headers, h.SOURCE_OFFSET) == "41"
    assert h.header(out.headers, h.ATTEMPTS) == "2"


def test_a_prefixed_topic_keeps_its_prefix():
    assert dead_letter(_record(topic="t9.oracle.requests"), "bad").topic == "t9.oracle.requests.dlq"


def test_a_string_error_is_used_as_it_is_and_a_null_value_becomes_empty_bytes():
    out = dead_letter(_record(value=None, key=None), "filter unknown/v1 is not loaded")
    assert h.header(out.headers, h.ERROR) == "filter unknown/v1 is not loaded"
    assert out.value == b"" and out.key is None


def test_dead_lettering_a_dead_letter_replaces_the_old_provenance():
    first = dead_letter(_record(), "first failure")
    again = dead_letter(_record(topic=first.topic, headers=first.headers, partition=0, offset=7), "second failure")
    names = [k for k, _ in again.headers]
    assert names.count(h.ERROR) == 1 and names.count(h.SOURCE_TOPIC) == 1
    assert h.header(again.headers, h.ERROR) == "second failure"
    assert h.header(again.headers, h.SOURCE_TOPIC) == "articles.raw.dlq"
    assert h.header(again.headers, h.TRACE_ID) == "trace-1"


def test_the_error_names_no_server_path_and_is_bounded():
    out = dead_letter(_record(), OSError("cannot open /srv/distillery/models/secret-model/weights.bin"))
    text = h.header(out.headers, h.ERROR)
    assert "/srv/distillery" not in text and "weights.bin" not in text
    assert "incident" in text  # the detail is in the server log under the incident id
    long = dead_letter(_record(), "x" * 5000)
    assert len(h.header(long.headers, h.ERROR)) == 2000
