"""distillery.bus.topics and .headers: topic names, prefixes, dead-letter names, the envelope headers."""

from __future__ import annotations

import uuid

from distillery.bus import headers as h
from distillery.bus.topics import TOPICS, dlq, with_prefix


def test_topics_are_the_pipeline_contract_and_distinct():
    assert TOPICS == ("articles.raw", "articles.candidates", "articles.rejected", "oracle.requests",
                      "oracle.labels", "articles.scored", "models.events")
    assert len(set(TOPICS)) == len(TOPICS)
    assert not any(t.endswith(".dlq") for t in TOPICS)


def test_dead_letter_topic_of_a_topic_and_of_a_prefixed_topic():
    assert dlq("articles.raw") == "articles.raw.dlq"
    # the prefix goes in front of the whole name, so a namespace's DLQs stay inside the namespace
    assert with_prefix(dlq("oracle.requests"), "t1.") == "t1.oracle.requests.dlq"
    assert dlq(with_prefix("oracle.requests", "t1.")) == "t1.oracle.requests.dlq"


def test_prefix_is_optional():
    assert with_prefix("articles.scored") == "articles.scored"
    assert with_prefix("articles.scored", "") == "articles.scored"
    assert with_prefix("articles.scored", "ci-42.") == "ci-42.articles.scored"


def test_envelope_headers_carry_schema_version_and_trace_id_first():
    headers = h.make_headers("abc123", {h.PASSED_FILTERS: "uplifting/v1,climate/v2"})
    assert headers[:2] == [(h.SCHEMA, h.SCHEMA_VERSION.encode()), (h.TRACE_ID, b"abc123")]
    assert h.header(headers, h.PASSED_FILTERS) == "uplifting/v1,climate/v2"
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in headers)


def test_a_new_trace_id_when_none_is_given():
    first, second = h.make_headers(), h.make_headers()
    a, b = h.header(first, h.TRACE_ID), h.header(second, h.TRACE_ID)
    assert a != b
    assert uuid.UUID(hex=a).hex == a


def test_extra_headers_keep_their_order_and_accept_pairs():
    headers = h.make_headers("t", [("x-b", "2"), ("x-a", "1")])
    assert [k for k, _ in headers][2:] == ["x-b", "x-a"]


def test_header_reads_the_last_value_and_defaults():
    headers = [(h.TRACE_ID, b"old"), ("other", b"x"), (h.TRACE_ID, b"new"), ("empty", None)]
    assert h.header(headers, h.TRACE_ID) == "new"
    assert h.header(headers, "missing") == ""
    assert h.header(headers, "missing", "fallback") == "fallback"
    assert h.header(headers, "empty", "fallback") == "fallback"  # a null header value counts as absent
    assert h.header(None, h.TRACE_ID) == ""


def test_header_decodes_invalid_utf8_without_raising():
    assert h.header([("k", b"caf\xe9")], "k") == "caf\ufffd"
    assert h.header([("k", bytearray(b"v"))], "k") == "v"
