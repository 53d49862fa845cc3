"""Oracle gateway throughput against a provider with 200 ms latency and a 600 requests/min limit.

Goal (issue 4): sustain >= 95% of the allowed rate with no 429 caused by the gateway, lose no article
under injected faults, and add < 2 ms per request.

Runs the same code path as ``distillery score`` (OracleEngine + run_job, in-process) against the local
fake provider (OpenAI wire format, real HTTP). Two scenarios:
  clean  - no faults: rate as % of 600/min, 429s received;
  faults - 500s, injected 429s with Retry-After, timeouts, fenced/trailing-comma JSON, missing dimensions,
           out-of-range scores: every article must end up labelled (none lost, none dead-lettered).
Overhead = time per label spent in the gateway itself (store, cache, parsing, pricing, metrics), i.e.
wall time of a label minus the provider call and the pacing/backoff waits (histogram
distillery_oracle_overhead_seconds).

    .venv/bin/python benchmarks/oracle_throughput.py [--articles 300] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from distillery import synthetic
from distillery.articles import from_record
from distillery.config import REPO_ROOT
from distillery.filters import FilterCatalog
from services.oracle_gateway import metrics
from services.oracle_gateway.config import OracleConfig, OracleGatewaySettings, Price
from services.oracle_gateway.engine import OracleEngine
from services.oracle_gateway.fake_llm import FakeLLMConfig, FakeLLMServer
from services.oracle_gateway.jobs import run_job

RPM = 600
LATENCY = 0.2
FAULTS = {"500": 0.04, "429": 0.02, "slow": 0.01, "fenced": 0.03, "trailing_comma": 0.02, "missing_dim": 0.02,
          "out_of_range": 0.02}


def _overhead() -> tuple[float, float]:
    samples = metrics.OVERHEAD.collect()[0].samples
    total = next(s.value for s in samples if s.name.endswith("_sum"))
    count = next(s.value for s in samples if s.name.endswith("_count"))
    return total, count


def scenario(name: str, n: int, faults: dict[str, float], catalog: FilterCatalog, workers: int) -> dict:
    spec = catalog.get("uplifting")
    articles = [from_record(r) for r in synthetic.generate(spec, n, seed=hash(name) % 1000)]
    with tempfile.TemporaryDirectory() as tmp, FakeLLMServer(FakeLLMConfig(
            latency_seconds=LATENCY, requests_per_minute=RPM, window_seconds=1.0, retry_after_seconds=1.0,
            slow_seconds=3.0, fault_rates=faults, seed=7)) as fake:
        settings = OracleGatewaySettings(state_dir=Path(tmp), cache_url="off", oracles={
            "fake": OracleConfig(kind="openai", model="gpt-4o-mini", base_url=fake.url + "/v1",
                                 requests_per_minute=RPM, max_concurrency=workers, timeout_seconds=2.0,
                                 backoff_base_seconds=0.25, price=Price(input=0.15, output=0.6))})
        engine = OracleEngine(settings, catalog)
        before_sum, before_count = _overhead()
        t0 = time.perf_counter()
        progress = run_job(engine, spec, articles, "fake", job_id=f"bench-{name}", workers=workers)
        wall = time.perf_counter() - t0
        after_sum, after_count = _overhead()
        stored = engine.store.count("uplifting")
        dead = len(engine.store.dead_letters())
        engine.close()
        stats = dict(fake.stats)
    requests = stats.get("requests", 0)
    allowed = RPM / 60.0
    # Useful rate: labels per second over the run, against the provider's allowed rate. Retries of injected
    # faults consume quota too, so the faults scenario also reports requests/s (all attempts).
    labels_per_s = stored / wall
    requests_per_s = requests / wall
    overhead_ms = 1000 * (after_sum - before_sum) / max(after_count - before_count, 1)
    return {
        "scenario": name, "articles": n, "labelled": stored, "dead_lettered": dead, "lost": n - stored - dead,
        "wall_seconds": round(wall, 2), "provider_requests": requests,
        "requests_per_second": round(requests_per_s, 3), "labels_per_second": round(labels_per_s, 3),
        "rate_pct_of_limit": round(100 * requests_per_s / allowed, 1),
        "rate_limited_by_provider_limit": stats.get("rate_limited", 0),
        "injected_faults": {k.removeprefix("fault_"): v for k, v in stats.items()
                            if k.startswith("fault_") and k != "fault_ok"},
        "gateway_overhead_ms_per_label": round(overhead_ms, 3), "workers": workers,
        "failed": progress.failed,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--articles", type=int, default=300)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = p.parse_args()
    catalog = FilterCatalog.load(REPO_ROOT / "filters", ["uplifting"])
    results = [scenario("clean", args.articles, {}, catalog, args.workers),
               scenario("faults", args.articles, FAULTS, catalog, args.workers)]
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"provider": {"latency_seconds": LATENCY, "requests_per_minute": RPM, "window_seconds": 1.0},
               "goal": {"rate_pct_of_limit": ">= 95", "self_caused_429": 0, "lost": 0, "overhead_ms": "< 2"},
               "results": results}
    (args.out / "oracle_throughput.json").write_text(json.dumps(payload, indent=1))
    lines = [("| scenario | articles | labelled | lost | dead-lettered | requests/s | % of 600/min | 429 (limit) "
              "| overhead ms/label | wall s |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['scenario']} | {r['articles']} | {r['labelled']} | {r['lost']} | {r['dead_lettered']} | "
                     f"{r['requests_per_second']} | {r['rate_pct_of_limit']} | {r['rate_limited_by_provider_limit']} "
                     f"| {r['gateway_overhead_ms_per_label']} | {r['wall_seconds']} |")
    table = "\n".join(lines)
    (args.out / "oracle_throughput.md").write_text(
        "# Oracle gateway throughput (fake provider: 200 ms latency, 600 requests/min)\n\n" + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
