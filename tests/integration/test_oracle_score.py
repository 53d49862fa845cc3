"""`distillery score` as a real process: labels through a fake paid provider, budget stop, resume after kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from distillery.store import LabelStore
from distillery.testing.fake_provider import FakeLLMConfig, FakeLLMServer

pytestmark = pytest.mark.integration
SECRET = "sk-score-SECRET-abcdef0123456789"


@pytest.fixture()
def fake():
    with FakeLLMServer(FakeLLMConfig(api_key=SECRET, latency_seconds=0.05)) as srv:
        yield srv


def _config(tmp_path, fake):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"oracle_gateway": {
        "state_dir": str(tmp_path / "state"),
        "oracles": {"fake": {"kind": "openai", "model": "gpt-4o-mini", "base_url": fake.url + "/v1",
                             "api_key_env": "FAKE_KEY", "max_concurrency": 4}},
    }}))
    return path


def _score(tmp_path, fake, *args, wait=True):
    cmd = [sys.executable, "-m", "distillery.cli.main", "score", "--filter", "uplifting/v1", "--oracle", "fake",
           "--config", str(_config(tmp_path, fake)), "--no-prefilter", *args]
    env = {**os.environ, "FAKE_KEY": SECRET}
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120)


def test_dry_run_calls_nothing(tmp_path, fake):
    out = _score(tmp_path, fake, "--count", "10", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "estimated $" in out.stdout and "10 articles" in out.stdout
    assert fake.stats["requests"] == 0


def test_budget_stop_is_clear(tmp_path, fake):
    out = _score(tmp_path, fake, "--count", "40", "--budget", "0.002")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "budget of job" in out.stderr
    store = LabelStore.open(tmp_path / "state" / "labels.sqlite")
    assert 0 < store.count("uplifting") < 40 and store.spent("uplifting") <= 0.002
    store.close()
    assert SECRET not in out.stdout + out.stderr


def test_killed_and_restarted_it_repays_nothing_and_loses_nothing(tmp_path, fake):
    n = 60
    proc = _score(tmp_path, fake, "--count", str(n), wait=False)
    store_path = tmp_path / "state" / "labels.sqlite"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if store_path.exists():
            store = LabelStore.open(store_path)
            done = store.count("uplifting")
            store.close()
            if done >= 10:
                break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    time.sleep(0.5)  # let the fake finish answering the calls that were in flight at the kill
    store = LabelStore.open(store_path)
    first = store.count("uplifting")
    store.close()
    assert 10 <= first < n
    paid_before = fake.stats["answered"]
    out = _score(tmp_path, fake, "--count", str(n))
    assert out.returncode == 0, out.stderr
    store = LabelStore.open(store_path)
    assert store.count("uplifting") == n
    store.close()
    # The rerun pays only for what was not stored; at most the requests in flight at the kill are paid twice.
    assert fake.stats["answered"] - paid_before == n - first
    assert fake.stats["answered"] <= n + 4
    # The cost ledger holds every billed call but, at most, those answered in the instant of the kill (before
    # their row was written): never more than the requests in flight (max_concurrency 4).
    store = LabelStore.open(store_path)
    recorded = len(store.calls())
    store.close()
    assert 0 <= len(fake.billed) - recorded <= 4
    assert f"already labelled {first}" in out.stdout.replace(",", "")
