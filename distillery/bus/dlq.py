"""Dead letters: a message a stage cannot process goes to ``<topic>.dlq`` with the original bytes and why."""

from __future__ import annotations

from dataclasses import dataclass

from distillery.bus import headers as h
from distillery.bus.topics import dlq
from distillery.redact import public


@dataclass(frozen=True)
class OutMessage:
    """One message a stage wants produced."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def dead_letter(record, error: BaseException | str, attempts: int = 1) -> OutMessage:
    """The DLQ message for a consumed ``record``: same key and value bytes, original headers kept, plus
    error, source topic/partition/offset and attempts. The error says what, never where: no server path, host
    or secret reaches the topic (the detail is logged under the incident id the header carries)."""
    text = public(error if isinstance(error, str) else f"{type(error).__name__}: {error}", what="dead letter")
    original = [(k, v) for k, v in (record.headers or []) if not k.startswith("dlq-")]
    extra = [
        (h.ERROR, text[:2000].encode("utf-8", "replace")),
        (h.SOURCE_TOPIC, record.topic.encode()),
        (h.SOURCE_PARTITION, str(record.partition).encode()),
        (h.SOURCE_OFFSET, str(record.offset).encode()),
        (h.ATTEMPTS, str(attempts).encode()),
    ]
    return OutMessage(dlq(record.topic), record.key, record.value if record.value is not None else b"",
                      original + extra)
