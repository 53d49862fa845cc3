"""An independent observer of the pipeline's topics: who reached which topic, and when.

It reads every topic it is given from the beginning with a consumer of its own (no group, no commits),
so it never interferes with the stages, and keeps per-topic key sets, record timestamps and decoded
values where asked. The demo uses it to wait for conditions and to measure end-to-end latency from
the Kafka record timestamps (producer CreateTime) of ``articles.raw`` and ``articles.scored``.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

from kafka import KafkaConsumer, TopicPartition


class TopicObserver:
    def __init__(self, bootstrap: str, topics: Iterable[str], decoders: dict[str, Callable[[bytes], object]] | None
                 = None):
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.decoders = decoders or {}
        self.keys: dict[str, dict[str, int]] = defaultdict(dict)  # topic -> key -> first timestamp (ms)
        self.counts: dict[str, int] = defaultdict(int)  # topic -> records (duplicates included)
        self.values: dict[str, list[tuple[str, object]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="topic-observer", daemon=True)
        self._consumer: KafkaConsumer | None = None
        self._seen: set[tuple[TopicPartition, int]] = set()
        self._refresh = threading.Event()

    def start(self) -> TopicObserver:
        self._consumer = self._new_consumer()
        self._thread.start()
        return self

    def _new_consumer(self) -> KafkaConsumer:
        return KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100)

    def refresh(self) -> None:
        """Read everything again with a fresh consumer (records already seen are not counted twice).

        A kafka-python consumer on the embedded broker has been seen to stop receiving records of a
        manually assigned partition; a new consumer always catches up, so waits call this when stalled.
        """
        self._refresh.set()

    def _assign(self) -> None:
        partitions = []
        for topic in self.topics:
            for p in self._consumer.partitions_for_topic(topic) or ():
                partitions.append(TopicPartition(topic, p))
        current = set(self._consumer.assignment())
        if set(partitions) == current:
            return
        # assign() forgets fetch positions: keep where each known partition was, start new ones at 0.
        positions = {tp: self._consumer.position(tp) for tp in current}
        self._consumer.assign(partitions)
        for tp in partitions:
            if tp in positions and positions[tp] is not None:
                self._consumer.seek(tp, positions[tp])
            else:
                self._consumer.seek_to_beginning(tp)

    def _run(self) -> None:
        last_assign = 0.0
        while not self._stop.is_set():
            if self._refresh.is_set():
                self._refresh.clear()
                self._consumer.close()
                self._consumer = self._new_consumer()
                last_assign = 0.0
            if time.monotonic() - last_assign > 1.0:
                self._consumer.poll(0)  # refresh metadata so new topics appear
                self._assign()
                last_assign = time.monotonic()
            if not self._consumer.assignment():
                self._stop.wait(0.2)
                continue
            batch = self._consumer.poll(timeout_ms=200, max_records=2000)
            with self._lock:
                for tp, records in batch.items():
                    decode = self.decoders.get(tp.topic)
                    for r in records:
                        if (tp, r.offset) in self._seen:
                            continue  # a re-read after a reassignment: count each record once
                        self._seen.add((tp, r.offset))
                        key = (r.key or b"").decode("utf-8", "replace")
                        self.counts[tp.topic] += 1
                        self.keys[tp.topic].setdefault(key, r.timestamp)
                        if decode is not None:
                            self.values[tp.topic].append((key, decode(r.value or b"")))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        if self._consumer is not None:
            self._consumer.close()

    def key_set(self, topic: str) -> set[str]:
        with self._lock:
            return set(self.keys.get(topic, {}))

    def timestamps(self, topic: str) -> dict[str, int]:
        with self._lock:
            return dict(self.keys.get(topic, {}))

    def decoded(self, topic: str) -> list[tuple[str, object]]:
        with self._lock:
            return list(self.values.get(topic, []))

    def count(self, topic: str) -> int:
        with self._lock:
            return self.counts.get(topic, 0)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str,
                 on_tick: Callable[[], None] | None = None, stall_seconds: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        last_total, last_change = -1, time.monotonic()
        while not condition():
            if on_tick:
                on_tick()
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            with self._lock:
                total = sum(self.counts.values())
            if total != last_total:
                last_total, last_change = total, now
            elif now - last_change > stall_seconds:
                self.refresh()
                last_change = now
            time.sleep(0.2)
