"""The label store: articles and oracle labels, SQLite by default, PostgreSQL for deployments.

One label row per (article id, filter name, filter version, prompt hash, oracle model); writing the same
key again replaces the row (idempotent upsert), so a redelivered request never creates a duplicate. The
gateway writes through :meth:`LabelStore.put`; the trainer reads with :meth:`LabelStore.iter_labelled`.

``LabelStore.open(url)`` accepts a filesystem path, ``sqlite:///abs/path.sqlite`` or
``postgresql://user@host:port/db`` (add ``?options=-csearch_path%3Dmy_schema`` to use a schema).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from distillery.articles import Article, content_hash, read_jsonl
from distillery.labels import DimensionLabel, FilterRef, LabelReason, OracleLabel, Usage

IMPORTED_PROMPT_HASH = "imported"

_ARTICLE_COLUMNS = ("id", "title", "text", "url", "source", "source_type", "language", "published_at")

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS articles (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        text TEXT NOT NULL,
        url TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        source_type TEXT NOT NULL DEFAULT '',
        language TEXT NOT NULL DEFAULT '',
        published_at TEXT NOT NULL DEFAULT '',
        metadata TEXT NOT NULL DEFAULT '{}',
        synthetic INTEGER NOT NULL DEFAULT 0,
        content_hash TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS labels (
        article_id TEXT NOT NULL,
        filter_name TEXT NOT NULL,
        filter_version INTEGER NOT NULL,
        prompt_hash TEXT NOT NULL,
        oracle_model TEXT NOT NULL,
        oracle TEXT NOT NULL DEFAULT '',
        provider TEXT NOT NULL DEFAULT '',
        scores TEXT NOT NULL,
        evidence TEXT NOT NULL DEFAULT '{}',
        input_tokens BIGINT NOT NULL DEFAULT 0,
        cached_input_tokens BIGINT NOT NULL DEFAULT 0,
        output_tokens BIGINT NOT NULL DEFAULT 0,
        cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        temperature DOUBLE PRECISION NOT NULL DEFAULT 0,
        latency_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
        raw_response TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        job_id TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        PRIMARY KEY (article_id, filter_name, filter_version, prompt_hash, oracle_model)
    )""",
    "CREATE INDEX IF NOT EXISTS labels_by_filter ON labels (filter_name, filter_version, oracle_model)",
    "CREATE INDEX IF NOT EXISTS labels_by_oracle ON labels (article_id, filter_name, filter_version, prompt_hash, oracle)",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        article_id TEXT NOT NULL,
        filter_name TEXT NOT NULL,
        filter_version INTEGER NOT NULL,
        oracle TEXT NOT NULL,
        error_code TEXT NOT NULL,
        error TEXT NOT NULL,
        raw_response TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 0,
        job_id TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        PRIMARY KEY (article_id, filter_name, filter_version, oracle)
    )""",
    # The cost ledger: one row per billed provider call (answered, re-asked, dead-lettered, batch), so that
    # spend is what the provider bills, whatever became of the answer.
    """CREATE TABLE IF NOT EXISTS oracle_calls (
        call_id TEXT PRIMARY KEY,
        article_id TEXT NOT NULL DEFAULT '',
        filter_name TEXT NOT NULL,
        filter_version INTEGER NOT NULL DEFAULT 0,
        oracle TEXT NOT NULL DEFAULT '',
        provider TEXT NOT NULL DEFAULT '',
        oracle_model TEXT NOT NULL,
        outcome TEXT NOT NULL,
        batch INTEGER NOT NULL DEFAULT 0,
        input_tokens BIGINT NOT NULL DEFAULT 0,
        cached_input_tokens BIGINT NOT NULL DEFAULT 0,
        output_tokens BIGINT NOT NULL DEFAULT 0,
        cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        job_id TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS oracle_calls_by_filter ON oracle_calls (filter_name, job_id)",
]

# Outcomes of a billed call in the ledger.
CALL_LABELLED = "labelled"  # its answer became the label
CALL_INVALID = "invalid"  # its answer failed validation (re-asked, or the article was dead-lettered)
CALL_UNUSED = "unused"  # answered, but another copy's answer (a hedge) was used
CALL_WRITTEN = "written"  # a writer's answer that became a synthetic article (distillery synthesize)
CALL_OUTCOMES = (CALL_LABELLED, CALL_INVALID, CALL_UNUSED, CALL_WRITTEN, "migrated")

_REASONS = {int(r): r.wire_name for r in LabelReason}
AUDIT_REASONS = (LabelReason.AUDIT.wire_name,)  # labels that measure a student; they must never train one


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class LabelledArticle:
    """One label with its article: what a trainer reads."""

    id: str
    title: str
    text: str
    url: str
    source: str
    source_type: str
    language: str
    published_at: str
    metadata: dict[str, str]
    synthetic: bool
    filter_name: str
    filter_version: int
    prompt_hash: str
    oracle_model: str
    scores: dict[str, float]
    evidence: dict[str, str] = field(default_factory=dict)
    oracle: str = ""
    provider: str = ""
    cost_usd: float = 0.0
    created_at: str = ""

    def to_article(self) -> Article:
        return Article(**{c: getattr(self, c) for c in _ARTICLE_COLUMNS}, metadata=dict(self.metadata))

    def to_record(self) -> dict[str, Any]:
        """The JSONL export shape (compatible with :meth:`LabelStore.import_jsonl`)."""
        record = {c: getattr(self, c) for c in _ARTICLE_COLUMNS}
        record.update(
            metadata=self.metadata,
            synthetic=self.synthetic,
            filter=self.filter_name,
            version=f"v{self.filter_version}",
            prompt_hash=self.prompt_hash,
            oracle=self.oracle,
            oracle_model_resolved=self.oracle_model,
            provider=self.provider,
            dimension_scores=self.scores,
            dimension_evidence=self.evidence,
            cost_usd=self.cost_usd,
            created_at=self.created_at,
        )
        return record


@dataclass(frozen=True)
class CostRow:
    """Spend aggregated by filter, provider and model (``distillery oracle costs``)."""

    filter_name: str
    provider: str
    oracle_model: str
    labels: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost_usd: float
    calls: int = 0


@dataclass(frozen=True)
class BilledCall:
    """One billed provider call, as the cost ledger records it."""

    filter_name: str
    filter_version: int
    oracle: str
    provider: str
    oracle_model: str
    outcome: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost_usd: float
    article_id: str = ""
    job_id: str = ""
    batch: bool = False
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def parse_filter_ref(ref: str) -> tuple[str, int]:
    """``name/vN`` (or ``name/N``) -> (name, N). The version is required for writes."""
    name, sep, version = ref.partition("/")
    if not sep or not version.lstrip("v").isdigit():
        raise ValueError(f"filter reference {ref!r} must look like name/vN (e.g. uplifting/v1)")
    return name, int(version.lstrip("v"))


class _Dialect:
    placeholder = "?"

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        cols = ", ".join(columns)
        marks = ", ".join([self.placeholder] * len(columns))
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        return (f"INSERT INTO {table} ({cols}) VALUES ({marks}) "
                f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")


class _Postgres(_Dialect):
    placeholder = "%s"


class LabelStore:
    """Articles and labels in SQLite or PostgreSQL. Thread-safe (one connection behind a lock)."""

    def __init__(self, conn: Any, dialect: _Dialect, url: str):
        self._conn = conn
        self._dialect = dialect
        self._lock = threading.RLock()
        self.url = url
        for statement in _SCHEMA:
            self._execute(statement)
        self._commit()
        self._migrate_ledger()

    # -- opening -------------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str | Path) -> LabelStore:
        text = str(url)
        if text.startswith(("postgresql://", "postgres://")):
            import psycopg

            try:
                conn = psycopg.connect(text, autocommit=False)
            except psycopg.OperationalError as exc:
                raise ValueError(f"cannot connect to the label store PostgreSQL database: {exc}") from None
            return cls(conn, _Postgres(), _redact_url(text))
        if text.startswith("sqlite:///"):
            text = text[len("sqlite:///") - 1:] if text.startswith("sqlite:////") else text[len("sqlite:///"):]
        elif "://" in text:
            raise ValueError(f"unsupported label store URL {text!r}: use a path, sqlite:///path or postgresql://...")
        path = Path(text)
        if text != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        return cls(conn, _Dialect(), str(path))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> LabelStore:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- low level -----------------------------------------------------------------------------------
    def _sql(self, statement: str) -> str:
        return statement.replace("?", self._dialect.placeholder) if self._dialect.placeholder != "?" else statement

    def _execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        with self._lock:
            return self._conn.execute(self._sql(statement), tuple(params))

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            cur = self._conn.execute(self._sql(statement), tuple(params))
            rows = cur.fetchall()
            if isinstance(self._dialect, _Postgres):
                self._conn.commit()
            return rows

    def _commit(self) -> None:
        with self._lock:
            if isinstance(self._dialect, _Postgres):
                self._conn.commit()

    def _transaction(self, statements: list[tuple[str, Sequence[Any]]]) -> None:
        with self._lock:
            sqlite = not isinstance(self._dialect, _Postgres)
            if sqlite:
                self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement, params in statements:
                    self._conn.execute(self._sql(statement), tuple(params))
            except BaseException:
                self._conn.rollback() if not sqlite else self._conn.execute("ROLLBACK")
                raise
            if sqlite:
                self._conn.execute("COMMIT")
            else:
                self._conn.commit()

    # -- writes --------------------------------------------------------------------------------------
    def _article_statement(self, article: Article) -> tuple[str, list[Any]]:
        meta = dict(article.metadata)
        synthetic = meta.get("synthetic", "").lower() == "true"
        columns = [*_ARTICLE_COLUMNS, "metadata", "synthetic", "content_hash", "created_at"]
        values = [getattr(article, c) for c in _ARTICLE_COLUMNS]
        values += [json.dumps(meta, sort_keys=True), int(synthetic), content_hash(article.title, article.text), utc_now()]
        return self._dialect.upsert("articles", columns, ["id"]), values

    def put_article(self, article: Article) -> None:
        if not article.id:
            raise ValueError("article.id is empty: validate the article (distillery.articles.validate) first")
        self._transaction([self._article_statement(article)])

    def put(self, article: Article, label: OracleLabel, raw_response: str = "",
            oracle: str = "", job_id: str = "") -> None:
        """Store (or replace) the article and its label, in one transaction."""
        if not article.id:
            raise ValueError("article.id is empty: validate the article (distillery.articles.validate) first")
        if label.article_id and label.article_id != article.id:
            raise ValueError(f"label is for article {label.article_id!r}, not {article.id!r}")
        if not label.filter.name or not label.filter.version:
            raise ValueError("label.filter needs a name and a concrete version (not 0)")
        if not label.oracle_model or not label.prompt_hash:
            raise ValueError("label needs oracle_model and prompt_hash (they are part of the key)")
        scores = {d.name: float(d.score) for d in label.dimensions}
        evidence = {d.name: d.evidence for d in label.dimensions}
        columns = ["article_id", "filter_name", "filter_version", "prompt_hash", "oracle_model", "oracle", "provider",
                   "scores", "evidence", "input_tokens", "cached_input_tokens", "output_tokens", "cost_usd",
                   "temperature", "latency_seconds", "raw_response", "reason", "job_id", "created_at"]
        values = [article.id, label.filter.name, label.filter.version, label.prompt_hash, label.oracle_model,
                  oracle, label.provider, json.dumps(scores), json.dumps(evidence, ensure_ascii=False),
                  label.usage.input_tokens, label.usage.cached_input_tokens, label.usage.output_tokens,
                  label.usage.cost_usd, label.temperature, label.latency_seconds, raw_response,
                  LabelReason.of(label.reason).wire_name, job_id, label.created_at or utc_now()]
        key = ["article_id", "filter_name", "filter_version", "prompt_hash", "oracle_model"]
        statements = [self._article_statement(article), (self._dialect.upsert("labels", columns, key), values)]
        if oracle:  # a label made after an earlier failure supersedes its dead letter
            clear = ("DELETE FROM dead_letters WHERE article_id = ? AND filter_name = ? AND filter_version = ? "
                     "AND oracle = ?")
            statements.append((clear, [article.id, label.filter.name, label.filter.version, oracle]))
        self._transaction(statements)

    def put_dead_letter(self, article: Article, filter_name: str, filter_version: int, oracle: str,
                        error_code: str, error: str, raw_response: str = "", attempts: int = 0,
                        job_id: str = "") -> None:
        """Record an article the oracle could not label (after retries), so that nothing is lost silently."""
        columns = ["article_id", "filter_name", "filter_version", "oracle", "error_code", "error", "raw_response",
                   "attempts", "job_id", "created_at"]
        values = [article.id, filter_name, filter_version, oracle, error_code, error, raw_response, attempts,
                  job_id, utc_now()]
        key = ["article_id", "filter_name", "filter_version", "oracle"]
        self._transaction([self._article_statement(article),
                           (self._dialect.upsert("dead_letters", columns, key), values)])

    def clear_dead_letter(self, article_id: str, filter_name: str, filter_version: int, oracle: str) -> None:
        statement = ("DELETE FROM dead_letters WHERE article_id = ? AND filter_name = ? AND filter_version = ? "
                     "AND oracle = ?")
        self._transaction([(statement, [article_id, filter_name, filter_version, oracle])])

    def dead_letters(self, filter_name: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE filter_name = ?", [filter_name]) if filter_name else ("", [])
        rows = self._query(f"SELECT article_id, filter_name, filter_version, oracle, error_code, error, attempts, "
                           f"job_id, created_at FROM dead_letters {where} ORDER BY created_at", params)
        keys = ["article_id", "filter_name", "filter_version", "oracle", "error_code", "error", "attempts", "job_id",
                "created_at"]
        return [dict(zip(keys, r)) for r in rows]

    # -- reads ---------------------------------------------------------------------------------------
    _LABEL_SELECT = (
        "SELECT a.id, a.title, a.text, a.url, a.source, a.source_type, a.language, a.published_at, a.metadata, "
        "a.synthetic, l.filter_name, l.filter_version, l.prompt_hash, l.oracle_model, l.scores, l.evidence, "
        "l.oracle, l.provider, l.cost_usd, l.created_at, l.input_tokens, l.cached_input_tokens, l.output_tokens, "
        "l.temperature, l.latency_seconds, l.reason FROM labels l JOIN articles a ON a.id = l.article_id"
    )

    @staticmethod
    def _labelled(row: tuple) -> LabelledArticle:
        return LabelledArticle(
            id=row[0], title=row[1], text=row[2], url=row[3], source=row[4], source_type=row[5], language=row[6],
            published_at=row[7], metadata=json.loads(row[8] or "{}"), synthetic=bool(row[9]), filter_name=row[10],
            filter_version=int(row[11]), prompt_hash=row[12], oracle_model=row[13], scores=json.loads(row[14]),
            evidence=json.loads(row[15] or "{}"), oracle=row[16], provider=row[17], cost_usd=float(row[18]),
            created_at=row[19],
        )

    @staticmethod
    def _label(row: tuple) -> OracleLabel:
        scores, evidence = json.loads(row[14]), json.loads(row[15] or "{}")
        return OracleLabel(
            article_id=row[0],
            filter=FilterRef(name=row[10], version=int(row[11])),
            prompt_hash=row[12], oracle_model=row[13], provider=row[17],
            dimensions=[DimensionLabel(name=k, score=float(v), evidence=evidence.get(k, ""))
                        for k, v in scores.items()],
            usage=Usage(input_tokens=int(row[20]), cached_input_tokens=int(row[21]),
                        output_tokens=int(row[22]), cost_usd=float(row[18])),
            temperature=float(row[23]), latency_seconds=float(row[24]), created_at=row[19],
            reason=LabelReason.from_wire_name(row[25] or ""),
        )

    def get(self, article_id: str, filter_name: str, filter_version: int, prompt_hash: str,
            oracle_model: str) -> OracleLabel | None:
        """The stored label for this exact key, or None."""
        rows = self._query(self._LABEL_SELECT + " WHERE l.article_id = ? AND l.filter_name = ? AND "
                           "l.filter_version = ? AND l.prompt_hash = ? AND l.oracle_model = ?",
                           [article_id, filter_name, filter_version, prompt_hash, oracle_model])
        return self._label(rows[0]) if rows else None

    def find(self, article_id: str, filter_name: str, filter_version: int, prompt_hash: str,
             oracle: str) -> OracleLabel | None:
        """The newest label made by the configured oracle ``oracle`` (its name, not the model id)."""
        rows = self._query(self._LABEL_SELECT + " WHERE l.article_id = ? AND l.filter_name = ? AND "
                           "l.filter_version = ? AND l.prompt_hash = ? AND l.oracle = ? ORDER BY l.created_at DESC",
                           [article_id, filter_name, filter_version, prompt_hash, oracle])
        return self._label(rows[0]) if rows else None

    def raw_response(self, article_id: str, filter_name: str, filter_version: int, prompt_hash: str,
                     oracle_model: str) -> str | None:
        rows = self._query("SELECT raw_response FROM labels WHERE article_id = ? AND filter_name = ? AND "
                           "filter_version = ? AND prompt_hash = ? AND oracle_model = ?",
                           [article_id, filter_name, filter_version, prompt_hash, oracle_model])
        return rows[0][0] if rows else None

    def _where(self, filter_name: str, filter_version: int | None, oracle_model: str | None,
               prompt_hash: str | None = None, include_synthetic: bool = True,
               reasons: Sequence[str] | None = None,
               exclude_reasons: Sequence[str] = ()) -> tuple[str, list[Any]]:
        clauses, params = ["l.filter_name = ?"], [filter_name]
        for name, values in (("reasons", reasons or ()), ("exclude_reasons", exclude_reasons or ())):
            if isinstance(values, str):
                raise TypeError(f"{name} must be a sequence of reason names, not the string {values!r}")
            unknown = [v for v in values if v not in _REASONS.values()]
            if unknown:
                raise ValueError(f"unknown label reason(s) {unknown}; known: {sorted(_REASONS.values())}")
        if reasons:
            clauses.append(f"l.reason IN ({', '.join('?' * len(reasons))})")
            params.extend(reasons)
        if exclude_reasons:
            clauses.append(f"l.reason NOT IN ({', '.join('?' * len(exclude_reasons))})")
            params.extend(exclude_reasons)
        if filter_version:
            clauses.append("l.filter_version = ?")
            params.append(filter_version)
        if oracle_model:
            clauses.append("l.oracle_model = ?")
            params.append(oracle_model)
        if prompt_hash:
            clauses.append("l.prompt_hash = ?")
            params.append(prompt_hash)
        if not include_synthetic:
            clauses.append("a.synthetic = 0")
        return " WHERE " + " AND ".join(clauses), params

    def iter_labelled(self, filter_name: str, filter_version: int | None = None, oracle_model: str | None = None,
                      prompt_hash: str | None = None, include_synthetic: bool = True,
                      batch_size: int = 500, reasons: Sequence[str] | None = None,
                      exclude_reasons: Sequence[str] = ()) -> Iterator[LabelledArticle]:
        """Every label of a filter (optionally one version / model / prompt), ordered by article id.

        An article labelled by several oracle models or prompt versions appears once per label; pass
        ``oracle_model`` (and ``prompt_hash``) to get one row per article. ``reasons`` keeps only labels
        made for those reasons (``LABEL_REASON_*`` names); ``exclude_reasons`` drops them (the trainer
        passes ``AUDIT_REASONS`` so that audit labels never train a student).
        """
        where, params = self._where(filter_name, filter_version, oracle_model, prompt_hash, include_synthetic,
                                    reasons, exclude_reasons)
        last: tuple[str, str, str, int] = ("", "", "", -1)
        while True:
            rows = self._query(
                self._LABEL_SELECT + where + " AND (l.article_id > ? OR (l.article_id = ? AND (l.oracle_model > ? OR "
                "(l.oracle_model = ? AND (l.prompt_hash > ? OR (l.prompt_hash = ? AND l.filter_version > ?))))))"
                " ORDER BY l.article_id, l.oracle_model, l.prompt_hash, l.filter_version LIMIT ?",
                [*params, last[0], last[0], last[1], last[1], last[2], last[2], last[3], batch_size])
            for row in rows:
                yield self._labelled(row)
            if len(rows) < batch_size:
                return
            r = rows[-1]
            last = (r[0], r[13], r[12], int(r[11]))

    def count(self, filter_name: str, filter_version: int | None = None, oracle_model: str | None = None,
              prompt_hash: str | None = None, include_synthetic: bool = True,
              reasons: Sequence[str] | None = None, exclude_reasons: Sequence[str] = ()) -> int:
        where, params = self._where(filter_name, filter_version, oracle_model, prompt_hash, include_synthetic,
                                    reasons, exclude_reasons)
        return int(self._query("SELECT COUNT(*) FROM labels l JOIN articles a ON a.id = l.article_id" + where,
                               params)[0][0])

    def oracle_models(self, filter_name: str, filter_version: int | None = None) -> list[tuple[str, int]]:
        """(oracle model, label count) for a filter, most labels first."""
        where, params = self._where(filter_name, filter_version, None)
        rows = self._query("SELECT l.oracle_model, COUNT(*) FROM labels l JOIN articles a ON a.id = l.article_id"
                           + where + " GROUP BY l.oracle_model ORDER BY COUNT(*) DESC, l.oracle_model", params)
        return [(r[0], int(r[1])) for r in rows]

    def labelled_ids(self, filter_name: str, filter_version: int, oracle: str, prompt_hash: str) -> set[str]:
        rows = self._query("SELECT article_id FROM labels WHERE filter_name = ? AND filter_version = ? AND "
                           "oracle = ? AND prompt_hash = ?", [filter_name, filter_version, oracle, prompt_hash])
        return {r[0] for r in rows}

    # -- the cost ledger -------------------------------------------------------------------------------
    def record_call(self, call: BilledCall) -> None:
        """Record one billed provider call (idempotent on ``call_id``)."""
        if call.outcome not in CALL_OUTCOMES:
            raise ValueError(f"unknown call outcome {call.outcome!r}")
        columns = ["call_id", "article_id", "filter_name", "filter_version", "oracle", "provider", "oracle_model",
                   "outcome", "batch", "input_tokens", "cached_input_tokens", "output_tokens", "cost_usd", "job_id",
                   "created_at"]
        values = [call.call_id, call.article_id, call.filter_name, call.filter_version, call.oracle, call.provider,
                  call.oracle_model, call.outcome, int(call.batch), call.input_tokens, call.cached_input_tokens,
                  call.output_tokens, call.cost_usd, call.job_id, utc_now()]
        marks = ", ".join("?" * len(columns))
        insert = (f"INSERT INTO oracle_calls ({', '.join(columns)}) VALUES ({marks}) "
                  "ON CONFLICT (call_id) DO NOTHING")
        self._transaction([(insert, values)])

    def calls(self, filter_name: str | None = None, job_id: str | None = None) -> list[dict[str, Any]]:
        """Every billed call (oldest first), for audits against a provider's invoice."""
        where, params = self._ledger_where(filter_name, job_id)
        keys = ["call_id", "article_id", "filter_name", "filter_version", "oracle", "provider", "oracle_model",
                "outcome", "batch", "input_tokens", "cached_input_tokens", "output_tokens", "cost_usd", "job_id",
                "created_at"]
        rows = self._query(f"SELECT {', '.join(keys)} FROM oracle_calls{where} ORDER BY created_at, call_id", params)
        return [dict(zip(keys, r)) for r in rows]

    @staticmethod
    def _ledger_where(filter_name: str | None, job_id: str | None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if filter_name:
            clauses.append("filter_name = ?")
            params.append(filter_name)
        if job_id:
            clauses.append("job_id = ?")
            params.append(job_id)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def _migrate_ledger(self) -> None:
        """Stores written before the ledger existed kept spend on labels only: copy it over, once."""
        if self._query("SELECT 1 FROM oracle_calls LIMIT 1"):
            return
        copy = (
            "INSERT INTO oracle_calls (call_id, article_id, filter_name, filter_version, oracle, provider, "
            "oracle_model, outcome, batch, input_tokens, cached_input_tokens, output_tokens, cost_usd, job_id, "
            "created_at) SELECT 'migrated:' || article_id || ':' || filter_name || ':' || filter_version || ':' || "
            "prompt_hash || ':' || oracle_model, article_id, filter_name, filter_version, oracle, provider, "
            "oracle_model, 'migrated', 0, input_tokens, cached_input_tokens, output_tokens, cost_usd, job_id, "
            "created_at FROM labels WHERE cost_usd > 0")
        self._transaction([(copy, [])])

    def costs(self, filter_name: str | None = None, job_id: str | None = None) -> list[CostRow]:
        """Spend from the ledger (every billed call), by filter, provider and model; ``labels`` counts the
        calls whose answer became a label, ``calls`` every billed call."""
        where, params = self._ledger_where(filter_name, job_id)
        rows = self._query(
            "SELECT filter_name, provider, oracle_model, "
            "SUM(CASE WHEN outcome IN ('labelled', 'migrated') THEN 1 ELSE 0 END), SUM(input_tokens), "
            "SUM(cached_input_tokens), SUM(output_tokens), SUM(cost_usd), COUNT(*) FROM oracle_calls" + where +
            " GROUP BY filter_name, provider, oracle_model ORDER BY filter_name, provider, oracle_model", params)
        return [CostRow(r[0], r[1], r[2], int(r[3] or 0), int(r[4] or 0), int(r[5] or 0), int(r[6] or 0),
                        float(r[7] or 0), int(r[8] or 0)) for r in rows]

    def spent(self, filter_name: str | None = None, job_id: str | None = None) -> float:
        return sum(row.cost_usd for row in self.costs(filter_name, job_id))

    # -- import / export ------------------------------------------------------------------------------
    def export_jsonl(self, path: Path | str, filter_ref: str, oracle_model: str | None = None) -> int:
        """Write every label of ``name`` or ``name/vN`` as JSONL; returns the number of records."""
        name, _, version = filter_ref.partition("/")
        ver = int(version.lstrip("v")) if version else None
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        n = 0
        with open(path, "w", encoding="utf-8") as fh:
            for item in self.iter_labelled(name, ver, oracle_model):
                fh.write(json.dumps(item.to_record(), ensure_ascii=False) + "\n")
                n += 1
        return n

    def export_parquet(self, path: Path | str, filter_ref: str, oracle_model: str | None = None) -> int:
        """Write the labels as Parquet (one column per dimension score, ``score_<dim>``)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        name, _, version = filter_ref.partition("/")
        ver = int(version.lstrip("v")) if version else None
        rows = []
        for item in self.iter_labelled(name, ver, oracle_model):
            record = item.to_record()
            record["metadata"] = json.dumps(record["metadata"])
            record["dimension_evidence"] = json.dumps(record["dimension_evidence"], ensure_ascii=False)
            for dim, score in record.pop("dimension_scores").items():
                record[f"score_{dim}"] = score
            rows.append(record)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), str(path))
        return len(rows)

    def import_jsonl(self, path: Path | str, filter_ref: str, oracle_model: str | None = None,
                     prompt_hash: str = IMPORTED_PROMPT_HASH, oracle: str | None = None) -> int:
        """Import oracle-labelled records (the shared/datasets shape, or this store's export).

        Each record needs ``dimension_scores`` ({dim: score}); ``oracle_model`` overrides the record's
        ``oracle_model_resolved``. Records without usable scores are skipped. Returns labels imported.
        """
        name, version = parse_filter_ref(filter_ref)
        n = 0
        for lineno, record in enumerate(read_jsonl(path), 1):
            scores = record.get("dimension_scores")
            if not isinstance(scores, dict):
                continue
            clean = {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}
            if not clean or not record.get("title") or not (record.get("text") or record.get("content")):
                continue
            model = oracle_model or record.get("oracle_model_resolved") or record.get("oracle") or "unknown"
            article = Article.from_record(record)
            evidence = record.get("dimension_evidence") if isinstance(record.get("dimension_evidence"), dict) else {}
            label = OracleLabel(
                article_id=article.id, filter=FilterRef(name=name, version=version),
                prompt_hash=record.get("prompt_hash") or prompt_hash, oracle_model=model,
                provider=record.get("provider") or "imported",
                dimensions=[DimensionLabel(name=k, score=min(max(v, 0.0), 10.0),
                                           evidence=str(evidence.get(k) or "")) for k, v in clean.items()],
                created_at=record.get("analyzed_at") or record.get("created_at") or utc_now(),
            )
            self.put(article, label, raw_response="", oracle=oracle or record.get("oracle") or model)
            n += 1
        return n


def _redact_url(url: str) -> str:
    """Drop a password from a connection URL before it is kept or shown."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url

