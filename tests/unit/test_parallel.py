"""Connecting to a Ray cluster: a transient refusal is retried, a lasting one fails the job with its error."""

from __future__ import annotations

import pytest
import ray

from distillery import parallel


class FlakyInit:
    """ray.init that fails ``failures`` times with the proxy's error, then connects (records every call)."""

    def __init__(self, failures: int, error: Exception | None = None):
        self.failures = failures
        self.error = error or RuntimeError("Starting Ray client server failed. See ray_client_server_23000.err")
        self.calls: list[str] = []

    def __call__(self, address: str, **_kwargs) -> None:
        self.calls.append(address)
        if len(self.calls) <= self.failures:
            raise self.error


@pytest.fixture
def fake_ray(monkeypatch):
    monkeypatch.setattr(parallel, "CONNECT_BACKOFF_S", 0.0)
    monkeypatch.setattr(ray, "shutdown", lambda: None)

    def install(init: FlakyInit) -> FlakyInit:
        monkeypatch.setattr(ray, "init", init)
        return init

    return install


def test_a_refused_client_server_is_retried_until_it_connects(fake_ray):
    init = fake_ray(FlakyInit(failures=2))
    parallel._connect("ray://head:10001", "distillery", {"env_vars": {}})
    assert init.calls == ["ray://head:10001"] * 3


def test_a_lasting_refusal_fails_the_job_naming_the_cluster_and_the_error(fake_ray):
    init = fake_ray(FlakyInit(failures=99))
    with pytest.raises(parallel.StageFailed, match=r"ray://head:10001: Starting Ray client server failed"):
        parallel._connect("ray://head:10001", "distillery", {"env_vars": {}})
    assert len(init.calls) == parallel.CONNECT_ATTEMPTS


def test_a_malformed_address_is_not_retried(fake_ray):
    init = fake_ray(FlakyInit(failures=99, error=ValueError("bad address")))
    with pytest.raises(parallel.StageFailed, match="bad address"):
        parallel._connect("nonsense://x", "distillery", {"env_vars": {}})
    assert len(init.calls) == 1
