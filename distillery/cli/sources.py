"""Where ``distillery score`` takes its articles from, and the prefilter it applies before paying the oracle.

This is an entry point's module: it may use any service's engine in-process (here the prefilter's), which
the services themselves never do of each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from distillery.articles import Article, read_jsonl
from distillery.bus.reader import iter_topic
from distillery.filters.spec import FilterSpec
from distillery.messages import article_of


def iter_source(source: str, spec: FilterSpec, count: int, seed: int = 0,
                bootstrap: str = "") -> Iterator[Article]:
    """Articles from a JSONL file, ``synthetic`` (the synthetic corpus for ``spec``) or a Kafka topic; at most
    ``count``. ``source`` is a topic when it is ``kafka:<topic>``, or when it is no file and ``bootstrap`` is set."""
    if source in ("", "synthetic"):
        from distillery import synthetic

        for record in synthetic.generate(spec, count, seed=seed):
            yield Article.from_record(record)
        return
    path = Path(source)
    if source.startswith("kafka:") or (bootstrap and not path.is_file()):
        yield from (article_of(message) for message in iter_topic(source.removeprefix("kafka:"), bootstrap, count))
        return
    if not path.is_file():
        raise FileNotFoundError(f"article source {source!r} is neither a JSONL file nor 'synthetic' (to read a "
                                "Kafka topic, give --bootstrap or set DISTILLERY_KAFKA_BOOTSTRAP)")
    for n, record in enumerate(read_jsonl(path)):
        if count and n >= count:
            return
        yield Article.from_record(record)


def prefilter_for(spec: FilterSpec) -> Callable[[Article], bool]:
    """The filter's own prefilter rules (the prefilter service's engine, in-process)."""
    from distillery_services.prefilter.engine import PrefilterEngine

    engine = PrefilterEngine([spec])

    def passes(a: Article) -> bool:
        return engine.check(a.title, a.text, a.url, a.source_type, a.language).verdicts[0].passed

    return passes
