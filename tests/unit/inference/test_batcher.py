import threading
import time

import pytest
from distillery_services.inference.batcher import DeadlineExceededError, DynamicBatcher

from distillery.rpc.errors import OverloadedError


def _echo(batches):
    def process(payloads, info):
        batches.append(list(payloads))
        return [p * 10 for p in payloads]

    return process


def test_merges_concurrent_items_into_one_batch():
    batches = []
    b = DynamicBatcher("t", _echo(batches), max_batch_size=16, max_wait_s=0.2)
    futures = []
    for i in range(8):
        futures += b.submit([i], [1])
    results = [f.result(5)[0] for f in futures]
    assert results == [i * 10 for i in range(8)]
    assert max(len(x) for x in batches) > 1
    b.close()


def test_respects_max_batch_size_and_tokens():
    batches = []
    b = DynamicBatcher("t", _echo(batches), max_batch_size=3, max_batch_tokens=10, max_wait_s=0.05)
    futures = b.submit(list(range(7)), [1] * 7)
    [f.result(5) for f in futures]
    assert all(len(x) <= 3 for x in batches)
    batches.clear()
    futures = b.submit(list(range(4)), [6, 6, 6, 6])  # two of them exceed 10 tokens
    [f.result(5) for f in futures]
    assert all(len(x) == 1 for x in batches)
    b.close()


def test_full_queue_raises_overloaded():
    gate = threading.Event()

    def slow(payloads, info):
        gate.wait(5)
        return payloads

    b = DynamicBatcher("t", slow, max_batch_size=1, max_queue=3, max_wait_s=0)
    first = b.submit([0], [1])
    time.sleep(0.05)  # the worker holds item 0
    b.submit([1, 2, 3], [1, 1, 1])
    with pytest.raises(OverloadedError, match="limit 3"):
        b.submit([4], [1])
    gate.set()
    assert first[0].result(5)[0] == 0
    b.close()


def test_expired_items_are_dropped_not_run():
    ran = []
    gate = threading.Event()

    def slow(payloads, info):
        gate.wait(5)
        ran.extend(payloads)
        return payloads

    b = DynamicBatcher("t", slow, max_batch_size=1, max_wait_s=0)
    b.submit(["first"], [1])
    time.sleep(0.05)
    late = b.submit(["late"], [1], deadline=time.monotonic() + 0.01)
    time.sleep(0.05)
    gate.set()
    with pytest.raises(DeadlineExceededError):
        late[0].result(5)
    assert "late" not in ran
    b.close()


def test_process_error_reaches_every_caller_and_worker_survives():
    calls = []

    def flaky(payloads, info):
        calls.append(payloads)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return payloads

    b = DynamicBatcher("t", flaky, max_batch_size=4, max_wait_s=0)
    f = b.submit([1], [1])
    with pytest.raises(RuntimeError, match="boom"):
        f[0].result(5)
    assert b.submit([2], [1])[0].result(5)[0] == 2
    b.close()


def test_futures_time_out_cancel_and_report_like_concurrent_futures():
    from concurrent.futures import CancelledError
    from concurrent.futures import TimeoutError as FutureTimeout

    gate = threading.Event()

    def held(payloads, info):
        gate.wait(5)
        return payloads

    b = DynamicBatcher("t", held, max_batch_size=1, max_wait_s=0)
    running, queued, kept = b.submit(["a", "b", "c"], [1, 1, 1])
    with pytest.raises(FutureTimeout):
        running.result(0.01)
    assert queued.cancel() and queued.cancelled() and queued.done()
    with pytest.raises(CancelledError):
        queued.result(1)
    gate.set()
    assert kept.result(5)[0] == "c" and not kept.cancel()
    assert running.result(5)[0] == "a"
    b.close()
