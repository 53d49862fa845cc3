"""Fuzz target: the Kafka envelope decoders of every stage (value bytes + headers of one consumed record).

Run: ``python tests/fuzz/fuzz_envelopes.py -runs=5000 [corpus_dir]`` (libFuzzer flags). A crash is any exception
other than the documented refusals (InvalidArticleError, ValueError such as InvalidIdentifierError), or a dead
letter whose error header is not short, scrubbed text.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["distillery", "services"]):
    from distillery_services.inference.stage import InferenceStage
    from distillery_services.oracle_gateway.stage import decode_request
    from distillery_services.prefilter.stage import decode_article

    from distillery.articles import InvalidArticleError, validate
    from distillery.bus import headers as h
    from distillery.bus.dlq import dead_letter
    from distillery.identifiers import check_label_request
    from distillery.v1 import events_pb2

MAX_TEXT_BYTES = 100_000
HEADER_NAMES = [h.TRACE_ID, h.PASSED_FILTERS, h.SCHEMA, "x-other"]


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _record(data: bytes) -> Record:
    fdp = atheris.FuzzedDataProvider(data)
    headers = [(HEADER_NAMES[fdp.ConsumeIntInRange(0, len(HEADER_NAMES) - 1)], fdp.ConsumeBytes(40))
               for _ in range(fdp.ConsumeIntInRange(0, 3))]
    key = fdp.ConsumeBytes(16) if fdp.ConsumeBool() else None
    return Record("fuzz.topic", 0, fdp.ConsumeIntInRange(0, 2**40), key, fdp.ConsumeBytes(fdp.remaining_bytes()),
                  headers)


def _decoders(record: Record):
    """Each stage's decoding of the record, as the stage runs it before any engine work."""

    def oracle():
        check_label_request(decode_request(record.value))

    def prefilter():
        validate(decode_article(record.value), MAX_TEXT_BYTES)

    def inference():
        candidate = events_pb2.CandidateArticle()
        try:
            candidate.ParseFromString(record.value or b"")
        except Exception as exc:  # noqa: BLE001 - as the stage does: DecodeError becomes a refusal
            raise InvalidArticleError(f"value is not a CandidateArticle: {exc}") from None
        validate(candidate.article, MAX_TEXT_BYTES)
        InferenceStage._filters_of(None, candidate, record.headers)

    return (oracle, prefilter, inference)


def test_one(data: bytes) -> None:
    record = _record(data)
    for decode in _decoders(record):
        try:
            decode()
        except (InvalidArticleError, ValueError) as exc:  # refused: dead-lettered by the stage
            letter = dead_letter(record, exc)
            error = dict(letter.headers)[h.ERROR].decode("utf-8")
            if len(error) > 2000 or "Traceback" in error:
                raise AssertionError(f"unfit dead-letter error header: {error[:200]!r}") from None
            assert letter.value == (record.value or b"") and letter.key == record.key


def seeds() -> list[bytes]:
    """Valid envelopes to start from (no headers, no key: the provider's first bytes read as zeros)."""
    from distillery.v1 import article_pb2, common_pb2, oracle_pb2

    article = article_pb2.Article(id="a1", title="Solar panels", text="A community builds a solar farm.")
    ref = common_pb2.FilterRef(name="uplifting", version=1)
    prefix = bytes(16)
    return [prefix + m.SerializeToString() for m in (
        article, oracle_pb2.LabelRequest(article=article, filter=ref, oracle="synthetic", job_id="job-1"),
        events_pb2.CandidateArticle(article=article, passed_filters=[ref]))]


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":  # the CI test's corpus (not a libFuzzer flag)
        for i, seed in enumerate(seeds()):
            (Path(sys.argv[2]) / f"seed-{i}").write_bytes(seed)
        return
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
