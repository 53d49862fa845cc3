"""Response cache keyed by (provider, model, prompt hash, article content hash): never pay twice.

SQLite by default; Redis (``redis://...``) to share it between replicas. A value is the provider's
answer text with the exact model id and usage of the call that paid for it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class CachedResponse:
    text: str
    model: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int


def cache_key(provider: str, model: str, prompt_hash: str, content_hash: str) -> str:
    return hashlib.sha256(f"{provider}\x00{model}\x00{prompt_hash}\x00{content_hash}".encode()).hexdigest()


class ResponseCache:
    """Interface + the disabled cache."""

    def get(self, key: str) -> CachedResponse | None:
        return None

    def put(self, key: str, value: CachedResponse) -> None:
        return None

    def close(self) -> None:
        return None


class SqliteResponseCache(ResponseCache):
    def __init__(self, path: Path | str):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes of the process
        self._conn.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedResponse | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return CachedResponse(**json.loads(row[0])) if row else None

    def put(self, key: str, value: CachedResponse) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)",
                               (key, json.dumps(asdict(value))))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class RedisResponseCache(ResponseCache):
    def __init__(self, client, prefix: str):
        self._client = client
        self._prefix = prefix + "cache:"

    def get(self, key: str) -> CachedResponse | None:
        raw = self._client.get(self._prefix + key)
        return CachedResponse(**json.loads(raw)) if raw else None

    def put(self, key: str, value: CachedResponse) -> None:
        self._client.set(self._prefix + key, json.dumps(asdict(value)))


def open_cache(location: str, redis_factory, prefix: str) -> ResponseCache:
    if location == "off":
        return ResponseCache()
    if location.startswith(("redis://", "rediss://", "unix://")):
        return RedisResponseCache(redis_factory(location), prefix)
    return SqliteResponseCache(location.removeprefix("sqlite:///") if location.startswith("sqlite:///") else location)
