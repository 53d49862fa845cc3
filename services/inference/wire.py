"""ScoreBatchResponse bytes written directly, for the replies of big batches.

Filling a ScoreResult field by field costs ~1.5 us per dimension in Python (a sub-message and six setters);
at a cheap model's 10,000 articles/s that was a tenth of the server's time. Here the dimension blocks of a
whole batch are written at once with numpy (one packed record per result: the dimension's name, then five
tagged doubles), and each result's few other fields are joined as bytes; the reply is then parsed once in
C. What comes out is the message :func:`~distillery_services.inference.servicer.fill_response` builds
(tested field for field).

Wire format (protobuf encoding): a field is a tag byte ``number << 3 | type`` (type 1: 8-byte double,
2: length-delimited, 0: varint) followed by its value; every field number here is below 16, so one byte.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

_DOUBLE = struct.Struct("<d")
_TIMINGS = struct.Struct("<BBBdBdBdBd")  # tag 9 + length 36, then four tagged doubles
_STAGES = {"single": 1, "cheap": 2, "expensive": 3}


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_TAGS = [bytes([field << 3 | 2]) for field in range(16)]


def _delimited(field: int, payload: bytes) -> bytes:
    n = len(payload)
    return _TAGS[field] + (bytes((n,)) if n < 0x80 else _varint(n)) + payload


def _text(field: int, value: str) -> bytes:
    """A string field that does not repeat (article ids): not cached."""
    return _delimited(field, value.encode("utf-8", "surrogatepass")) if value else b""


@lru_cache(maxsize=4096)
def _string(field: int, value: str) -> bytes:
    """A string field (cached: filter names, tiers, model versions and gatekeepers repeat)."""
    return _delimited(field, value.encode("utf-8", "surrogatepass")) if value else b""


@lru_cache(maxsize=256)
def _filter(name: str, version: int) -> bytes:
    return _delimited(2, _string(1, name) + (b"\x10" + _varint(version) if version else b""))


@lru_cache(maxsize=256)
def _layout(dimensions: tuple[str, ...]) -> tuple[np.dtype, list[bytes]]:
    """The packed record of one result's dimensions: per dimension its header (tag 3, length, name) and
    five (tag, double) pairs for raw, calibrated, lower, upper, spread (fields 2..6)."""
    fields: list[tuple[str, str]] = []
    headers = []
    for j, name in enumerate(dimensions):
        name_field = _string(1, name)
        headers.append(b"\x1a" + _varint(len(name_field) + 45) + name_field)
        fields.append((f"h{j}", f"V{len(headers[-1])}"))
        for k in range(5):
            fields += [(f"t{j}_{k}", "u1"), (f"v{j}_{k}", "<f8")]
    return np.dtype(fields), headers


def dimension_blocks(dimensions: Sequence[str], columns: Sequence[np.ndarray]) -> tuple[bytes, int]:
    """All results' dimension fields as one buffer of fixed-size records, and the record size.

    ``columns``: raw, calibrated, lower, upper, spread, each (results, dimensions)."""
    dtype, headers = _layout(tuple(dimensions))
    n = len(columns[0])
    records = np.empty(n, dtype=dtype)
    for j, header in enumerate(headers):
        records[f"h{j}"] = np.frombuffer(header, dtype=f"V{len(header)}")[0]
        for k, values in enumerate(columns):
            records[f"t{j}_{k}"] = (k + 2) << 3 | 1
            records[f"v{j}_{k}"] = values[:, j]
    return records.tobytes(), dtype.itemsize


def result_bytes(result, dims: bytes) -> bytes:
    """One ScoreResult: ``dims`` is its dimension block from :func:`dimension_blocks`."""
    parts = [_text(1, result.article_id), _filter(result.filter_name, result.filter_version), dims]
    parts.append(b"\x21" + _DOUBLE.pack(result.overall))
    parts.append(_string(5, result.tier))
    if result.uncertain:
        parts.append(b"\x30\x01")
    parts.append(_string(7, result.model_version))
    parts.append(b"\x40" + _varint(_STAGES[result.stage]))
    parts.append(_TIMINGS.pack(0x4A, 36, 0x09, result.queue_seconds, 0x11, result.preprocess_seconds,
                               0x19, result.inference_seconds, 0x21, result.total_seconds))
    parts += [_string(10, g) if g else b"\x52\x00" for g in result.gatekeepers_applied]
    return b"".join(parts)


def _columns(results: Sequence) -> list[np.ndarray]:
    """raw, calibrated, lower, upper, spread as (results, dimensions) arrays (np.array copies the rows'
    views faster than np.stack)."""
    zeros = np.zeros(len(results[0].dimensions))
    spread = [r.spread if r.spread is not None else zeros for r in results]
    return [np.array([r.raw for r in results], dtype=np.float64),
            np.array([r.calibrated for r in results], dtype=np.float64),
            np.array([r.lower for r in results], dtype=np.float64),
            np.array([r.upper for r in results], dtype=np.float64), np.array(spread, dtype=np.float64)]


def batch_response_bytes(article_ids: Sequence[str], per_article: Sequence[Sequence]) -> bytes:
    """The serialised ScoreBatchResponse: one ScoreResponse per article with its results (each article's
    results in filter order, as the engine returns them)."""
    encoded: list[list[bytes]] = [[b""] * len(results) for results in per_article]
    by_layout: dict[tuple, list[tuple[int, int, object]]] = {}  # results with the same dimensions together
    for i, results in enumerate(per_article):
        for j, result in enumerate(results):
            by_layout.setdefault(tuple(result.dimensions), []).append((i, j, result))
    for members in by_layout.values():
        block, size = dimension_blocks(members[0][2].dimensions, _columns([r for _, _, r in members]))
        for m, (i, j, result) in enumerate(members):
            encoded[i][j] = _delimited(2, result_bytes(result, block[m * size:(m + 1) * size]))
    return b"".join(_delimited(1, _text(1, article_id) + b"".join(encoded[i]))
                    for i, article_id in enumerate(article_ids))
