"""Between the engine's plain results and the protobuf contracts (used by the servicer and the stage)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from distillery_services.prefilter.engine import Verdict

from distillery.v1 import common_pb2, prefilter_pb2


def refs_of(filters: Iterable[common_pb2.FilterRef]) -> list[tuple[str, int]]:
    return [(f.name, int(f.version)) for f in filters]


def decision(article_id: str, verdict: Verdict) -> prefilter_pb2.Decision:
    return prefilter_pb2.Decision(
        article_id=article_id,
        filter=common_pb2.FilterRef(name=verdict.filter, version=verdict.version),
        passed=verdict.passed,
        reasons=[prefilter_pb2.Reason(code=r.code, matched=r.matched) for r in verdict.reasons],
    )


def decisions(article_id: str, verdicts: Sequence[Verdict]) -> list[prefilter_pb2.Decision]:
    return [decision(article_id, v) for v in verdicts]
