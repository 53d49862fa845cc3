"""Budgets per filter and per job: labelling stops before a request that would exceed one.

Each request reserves its estimated cost before it is sent and settles to the real cost after; a
request is refused when spent + reserved + its estimate would pass the budget, so the overshoot is at
most the estimation error of the requests in flight. Spend starts from what the label store already
records (so a restarted job keeps its spend). With Redis, every replica shares the same counters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from distillery.errors import BudgetExhaustedError


class _LocalCounters:
    def __init__(self):
        self._values: dict[str, float] = {}
        self._lock = threading.Lock()

    def init(self, key: str, value: Callable[[], float]) -> None:
        with self._lock:
            if key not in self._values:
                self._values[key] = value()

    def try_add(self, key: str, amount: float, limit: float) -> float | None:
        with self._lock:
            new = self._values.get(key, 0.0) + amount
            if new > limit + 1e-12:
                return None
            self._values[key] = new
            return new

    def add(self, key: str, amount: float) -> float:
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount
            return self._values[key]

    def get(self, key: str) -> float:
        with self._lock:
            return self._values.get(key, 0.0)


_TRY_ADD = """
local v = tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1])
if v > tonumber(ARGV[2]) + 1e-12 then return nil end
redis.call('SET', KEYS[1], string.format('%.10f', v))
return string.format('%.10f', v)
"""


class _RedisCounters:
    def __init__(self, client, prefix: str):
        self._client = client
        self._prefix = prefix + "budget:"
        self._try_add = client.register_script(_TRY_ADD)

    def init(self, key: str, value: Callable[[], float]) -> None:
        if not self._client.exists(self._prefix + key):
            self._client.set(self._prefix + key, f"{value():.10f}", nx=True)

    def try_add(self, key: str, amount: float, limit: float) -> float | None:
        out = self._try_add(keys=[self._prefix + key], args=[f"{amount:.10f}", f"{limit:.10f}"])
        return None if out is None else float(out)

    def add(self, key: str, amount: float) -> float:
        return float(self._client.incrbyfloat(self._prefix + key, amount))

    def get(self, key: str) -> float:
        return float(self._client.get(self._prefix + key) or 0.0)


class Budgets:
    """Reserve/settle spend against per-filter and per-job caps."""

    def __init__(self, filter_budgets: dict[str, float], default_job_budget: float,
                 spent_in_store: Callable[[str | None, str | None], float], redis_client=None, prefix: str = ""):
        self.filter_budgets = dict(filter_budgets)
        self.default_job_budget = default_job_budget
        self.job_budgets: dict[str, float] = {}
        self._spent_in_store = spent_in_store
        self._counters = _RedisCounters(redis_client, prefix) if redis_client is not None else _LocalCounters()

    def set_job_budget(self, job_id: str, usd: float) -> None:
        self.job_budgets[job_id] = usd

    def _scopes(self, filter_name: str, job_id: str) -> list[tuple[str, float, str]]:
        scopes = []
        if filter_name in self.filter_budgets:
            key = f"filter:{filter_name}"
            self._counters.init(key, lambda: self._spent_in_store(filter_name, None))
            scopes.append((key, self.filter_budgets[filter_name], f"filter {filter_name}"))
        job_budget = self.job_budgets.get(job_id, self.default_job_budget) if job_id else 0.0
        if job_id and job_budget > 0:
            key = f"job:{job_id}"
            self._counters.init(key, lambda: self._spent_in_store(None, job_id))
            scopes.append((key, job_budget, f"job {job_id}"))
        return scopes

    def keys(self, filter_name: str, job_id: str) -> list[str]:
        """The counter keys that apply to a request (filter and/or job), initialised from the store."""
        return [key for key, _, _ in self._scopes(filter_name, job_id)]

    def reserve(self, filter_name: str, job_id: str, estimate: float) -> list[str]:
        """Reserve ``estimate`` in every applicable scope, or raise BudgetExhaustedError (nothing reserved)."""
        done: list[str] = []
        for key, limit, label in self._scopes(filter_name, job_id):
            if self._counters.try_add(key, estimate, limit) is None:
                for k in done:
                    self._counters.add(k, -estimate)
                spent = self._counters.get(key)
                raise BudgetExhaustedError(
                    f"budget of {label} exhausted: ${spent:.4f} of ${limit:.4f} spent or reserved, and the next "
                    f"request is estimated at ${estimate:.4f}; raise the budget to continue")
            done.append(key)
        return done

    def settle(self, keys: list[str], estimate: float, actual: float) -> None:
        for key in keys:
            self._counters.add(key, actual - estimate)

    def remaining(self, filter_name: str) -> float | None:
        if filter_name not in self.filter_budgets:
            return None
        key = f"filter:{filter_name}"
        self._counters.init(key, lambda: self._spent_in_store(filter_name, None))
        return self.filter_budgets[filter_name] - self._counters.get(key)

    # -- operator view (GetBudgets / SetBudget, `distillery budgets`) --------------------------------------
    def spent(self, scope: str, name: str) -> float:
        """USD spent (and reserved in flight) by a filter or a job, initialised from the label store."""
        key = f"{scope}:{name}"
        self._counters.init(key, lambda: self._spent_in_store(name, None) if scope == "filter"
                            else self._spent_in_store(None, name))
        return self._counters.get(key)

    def set_limit(self, scope: str, name: str, usd: float) -> None:
        """Cap a filter or a job at ``usd`` (0 removes the cap) for this process's lifetime."""
        if scope not in ("filter", "job"):
            raise ValueError(f"budget scope must be 'filter' or 'job', not {scope!r}")
        if not name:
            raise ValueError(f"name the {scope} whose budget to set")
        if usd < 0:
            raise ValueError(f"a budget cannot be negative (got {usd})")
        caps = self.filter_budgets if scope == "filter" else self.job_budgets
        if usd == 0:
            caps.pop(name, None)
        else:
            caps[name] = float(usd)

    def overview(self, filter_name: str = "") -> list[dict]:
        """Every cap with its spend: per filter, per job, then the default job cap."""
        rows = []
        for scope, caps in (("filter", self.filter_budgets), ("job", self.job_budgets)):
            for name, limit in sorted(caps.items()):
                if filter_name and (scope != "filter" or name != filter_name):
                    continue
                spent = self.spent(scope, name)
                rows.append({"scope": scope, "name": name, "limit_usd": limit, "spent_usd": spent,
                             "remaining_usd": max(0.0, limit - spent)})
        if not filter_name:
            rows.append({"scope": "default_job", "name": "", "limit_usd": self.default_job_budget,
                         "spent_usd": 0.0, "remaining_usd": self.default_job_budget})
        return rows
