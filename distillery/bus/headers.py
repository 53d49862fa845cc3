"""Message headers every stage writes and reads: schema version, trace id, dead-letter provenance."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

SCHEMA_VERSION = "1"

SCHEMA = "distillery-schema"  # contract version of the value (bump on incompatible proto changes)
TRACE_ID = "trace-id"  # carried from the first producer through every stage, for logs
PASSED_FILTERS = "passed-filters"  # on articles.candidates: "name/vN,name/vN"
# Dead-letter headers (ARCHITECTURE.md section 4).
ERROR = "dlq-error"
SOURCE_TOPIC = "dlq-source-topic"
SOURCE_PARTITION = "dlq-source-partition"
SOURCE_OFFSET = "dlq-source-offset"
ATTEMPTS = "dlq-attempts"

Headers = list[tuple[str, bytes]]


def new_trace_id() -> str:
    return uuid.uuid4().hex


def header(headers: Sequence[tuple[str, bytes]] | None, name: str, default: str = "") -> str:
    """The last value of header ``name`` as text ('' or ``default`` when absent)."""
    value = default
    for key, raw in headers or ():
        if key == name and raw is not None:
            value = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
    return value


def make_headers(trace_id: str = "", extra: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> Headers:
    """Schema version + trace id (a new one when none is given) + ``extra``."""
    items = extra.items() if isinstance(extra, Mapping) else extra
    out: Headers = [(SCHEMA, SCHEMA_VERSION.encode()), (TRACE_ID, (trace_id or new_trace_id()).encode())]
    out.extend((k, v.encode("utf-8")) for k, v in items)
    return out
