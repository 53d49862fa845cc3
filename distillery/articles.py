"""Articles: the domain type, identity, validation, JSON records, truncation.

Plain Python: the engines and the label store use :class:`Article`; the edges turn the generated
``distillery.v1.Article`` message into one and back (:mod:`distillery.messages`). :func:`validate` reads and
fills only the fields both share, so it checks either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

DEFAULT_MAX_TEXT_BYTES = 1_000_000


class InvalidArticleError(ValueError):
    """An article that no stage can process; the message says which field to fix."""


def derive_id(url: str = "", title: str = "", text: str = "") -> str:
    """Stable id: a hash of the URL when there is one, else of title + text."""
    basis = url.strip() if url.strip() else f"{title}\n{text}"
    return hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def content_hash(title: str, text: str) -> str:
    """Hash of what the oracle and students see: equal content is never paid for twice."""
    return hashlib.sha256(f"{title}\n{text}".encode("utf-8", "surrogatepass")).hexdigest()


FIELDS = ("id", "title", "text", "url", "source", "source_type", "language", "published_at")


@dataclass
class Article:
    """One article as every stage sees it (the fields of the ``distillery.v1.Article`` message)."""

    id: str = ""
    title: str = ""
    text: str = ""
    url: str = ""
    source: str = ""
    source_type: str = ""
    language: str = ""
    published_at: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def copy_of(cls, other: Any) -> Article:
        """A new Article with the fields of ``other`` (an Article or anything with the same attributes)."""
        return cls(**{f: getattr(other, f) for f in FIELDS}, metadata=dict(other.metadata))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Article:
        """From a JSON record (accepts ``content`` for ``text`` and ``published_date``); the id derived when
        absent. Metadata values that are not strings are kept as their JSON."""
        values = {f: record.get(f) for f in FIELDS}
        values["text"] = values["text"] or record.get("content") or ""
        values["published_at"] = values["published_at"] or record.get("published_date") or ""
        article = cls(**{k: str(v) for k, v in values.items() if v is not None})
        meta = record.get("metadata") or {}
        if isinstance(meta, Mapping):
            article.metadata = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
        if not article.id:
            article.id = derive_id(article.url, article.title, article.text)
        return article

    def to_record(self) -> dict[str, Any]:
        return article_record(self)


def article_record(article: Any) -> dict[str, Any]:
    """The JSON record of an article (an Article or anything with the same attributes)."""
    record: dict[str, Any] = {f: getattr(article, f) for f in FIELDS}
    record["metadata"] = dict(article.metadata)
    return record


A = TypeVar("A")


def validate(article: A, max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> A:
    """Check the fields every stage needs and fill in a derived id; raise InvalidArticleError otherwise."""
    if not article.title.strip():
        raise InvalidArticleError("article.title is missing or blank: every article needs a headline")
    if not article.text.strip():
        raise InvalidArticleError(f"article.text is empty (article {article.id or article.title[:60]!r})")
    size = len(article.text.encode("utf-8", "surrogatepass"))
    if size > max_text_bytes:
        raise InvalidArticleError(
            f"article.text is {size:,} bytes, over the maximum of {max_text_bytes:,}; cut it before sending"
        )
    if not article.id:
        article.id = derive_id(article.url, article.title, article.text)
    return article


def read_jsonl(path: Path | str) -> Iterator[dict[str, Any]]:
    """Yield JSON records from a JSONL file; a broken line raises ValueError with its line number."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None


def write_jsonl(path: Path | str, records: Iterable[Mapping[str, Any]]) -> int:
    n = 0
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def head_tail_chars(text: str, max_chars: int, separator: str = " [...] ") -> str:
    """Keep the beginning and the end of a long text (conclusions often sit at the end)."""
    if len(text) <= max_chars:
        return text
    keep = max(max_chars - len(separator), 2)
    head = keep // 2
    return text[:head] + separator + text[len(text) - (keep - head):]
