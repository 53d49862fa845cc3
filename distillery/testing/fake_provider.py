"""A local HTTP server that speaks the real wire formats of the providers, with injected faults.

For tests, benchmarks and offline demos — never a production oracle. One server answers:

* OpenAI-compatible ``POST /v1/chat/completions`` (and ``/chat/completions``), files + batches
  (``/v1/files``, ``/v1/batches``, ``/v1/files/{id}/content``);
* Anthropic ``POST /v1/messages`` and message batches (``/v1/messages/batches[/{id}[/results]]``);
* Gemini ``POST /v1beta/models/{model}:generateContent``.

Answers are valid oracle JSON for the dimensions named in the prompt's JSON Schema, with scores
derived from a hash of the prompt (deterministic); a writer prompt (schema requiring ``title`` and
``text``, sent by ``distillery synthesize``) gets a deterministic made-up article instead. Faults are
injected from a script (a queue consumed one per chat request: ``"429"``, ``"500"``, ``"slow"``,
``"fenced"``, ``"trailing_comma"``, ``"broken"``, ``"missing_dim"``, ``"out_of_range"``, ``"auth"``,
``"hang"``, ``"ok"``) and/or at random with given rates.

Strict like a real provider:

* **Rate windows** (``rate_windows``): requests and/or tokens (prompt + ``max_tokens``, as OpenAI counts
  them) per fixed window (aligned to the epoch, like a provider's clock) or per sliding window, counted
  when a request arrives and enforced exactly: one request over the limit in any window is answered 429
  with ``Retry-After`` (whole seconds) and ``retry-after-ms``; rejected requests consume nothing. Every
  answer carries ``x-ratelimit-limit/remaining/reset-requests`` and ``-tokens`` for its tightest window.
  (The older ``requests_per_minute`` + ``window_seconds`` token bucket stays for callers that use it.)
* **Hangs**: a ``"hang"`` fault never answers; the request holds until the client gives up (or
  ``hang_seconds``). No answer was produced, so it is not billed. A ``"slow"`` answer whose client left
  before it was ready is not billed either (``stats["abandoned"]``).
* **Billing**: every answer produced for a client still waiting (batch items included) is billed in
  the server's own ledger (:attr:`FakeLLMServer.billed`, ``GET /_bill``): model, prompt and completion
  tokens (prompt = every message of the conversation), batch or not. Compare a gateway's cost ledger
  with it: tokens x price.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import select
import socket
import struct
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_SCHEMA = re.compile(r"JSON Schema:\s*(\{.*\})\s*$", re.MULTILINE)
_GEMINI = re.compile(r"^/v1beta/models/([^/:]+):generateContent$")
# Linux's SO_TIMESTAMPNS (Python has no name for it): the kernel's receive time of each packet.
_SO_TIMESTAMPNS = 35 if sys.platform.startswith("linux") else None
CORRECTIVE_PREFIX = "Your previous answer could not be used"


@dataclass
class FakeLLMConfig:
    latency_seconds: float = 0.0
    requests_per_minute: float = 0.0
    window_seconds: float = 1.0
    retry_after_seconds: float = 1.0
    slow_seconds: float = 5.0
    api_key: str = ""
    fault_rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    model_suffix: str = "-2025-01-01"
    # [{"unit": "requests"|"tokens", "limit": N, "seconds": S, "kind": "fixed"|"sliding"}, ...]
    rate_windows: list[dict] = field(default_factory=list)
    hang_seconds: float = 600.0


class _Windows:
    """Exact fixed/sliding window counters of requests and tokens (the provider's side of a rate limit)."""

    def __init__(self, windows: list[dict]):
        for w in windows:
            if w.get("unit") not in ("requests", "tokens") or w.get("kind", "fixed") not in ("fixed", "sliding"):
                raise ValueError(f"bad rate window {w!r}")
        self.windows = [{"kind": "fixed", **w} for w in windows]
        self._fixed: dict[int, tuple[int, float]] = {}  # window index -> (bucket number, used)
        self._sliding: dict[int, deque] = {i: deque() for i in range(len(self.windows))}

    def _used(self, i: int, now: float) -> tuple[float, float]:
        """(used, seconds until the window frees something) of window ``i`` at ``now``."""
        w = self.windows[i]
        if w["kind"] == "fixed":
            bucket = math.floor(now / w["seconds"])
            held, used = self._fixed.get(i, (bucket, 0.0))
            return (used if held == bucket else 0.0), (bucket + 1) * w["seconds"] - now
        log = self._sliding[i]
        while log and log[0][0] <= now - w["seconds"]:
            log.popleft()
        return sum(c for _, c in log), (log[0][0] + w["seconds"] - now) if log else 0.0

    def admit(self, now: float, tokens: float) -> tuple[bool, float]:
        """Count a request arriving at ``now``: (admitted, seconds until it could be) — all or nothing."""
        wait = 0.0
        for i, w in enumerate(self.windows):
            cost = 1.0 if w["unit"] == "requests" else tokens
            used, frees = self._used(i, now)
            if used + cost > w["limit"]:
                wait = max(wait, frees)
        if wait > 0:
            return False, wait
        for i, w in enumerate(self.windows):
            cost = 1.0 if w["unit"] == "requests" else tokens
            if w["kind"] == "fixed":
                bucket = math.floor(now / w["seconds"])
                used, _ = self._used(i, now)
                self._fixed[i] = (bucket, used + cost)
            else:
                self._sliding[i].append((now, cost))
        return True, 0.0

    def headers(self, now: float) -> dict[str, str]:
        out: dict[str, str] = {}
        for unit in ("requests", "tokens"):
            tightest = None
            for i, w in enumerate(self.windows):
                if w["unit"] != unit:
                    continue
                used, frees = self._used(i, now)
                left = w["limit"] - used
                if tightest is None or left < tightest[1]:
                    tightest = (w["limit"], left, frees)
            if tightest is not None:
                limit, left, frees = tightest
                out[f"x-ratelimit-limit-{unit}"] = f"{limit:g}"
                out[f"x-ratelimit-remaining-{unit}"] = f"{max(left, 0):g}"
                out[f"x-ratelimit-reset-{unit}"] = f"{math.ceil(max(frees, 0) * 1000)}ms"
        return out


def dimensions_in(prompt: str) -> list[str]:
    match = _SCHEMA.search(prompt)
    if match:
        try:
            return list(json.loads(match.group(1)).get("required", []))
        except ValueError:
            pass
    return re.findall(r"\*\*([a-z][a-z0-9_]*)\*\*", prompt)


_WORDS = ("solar", "cooperative", "clinic", "river", "school", "grid", "harvest", "library", "transit", "market",
          "forest", "workshop", "bridge", "village", "laboratory", "festival")


def is_writer_prompt(prompt: str) -> bool:
    """A request to write an article (``distillery synthesize``): its JSON Schema requires title and text."""
    match = _SCHEMA.search(prompt)
    if not match:
        return False
    try:
        return sorted(json.loads(match.group(1)).get("required", [])) == ["text", "title"]
    except ValueError:
        return False


def article_for(prompt: str) -> dict[str, str]:
    """A deterministic made-up article for a writer prompt (varies with the prompt)."""
    rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
    words = rng.sample(_WORDS, 6)
    title = f"The {words[0]} {words[1]} project reaches a new stage"
    sentences = [f"A {w} initiative in the region was described by organisers as a turning point." for w in words]
    sentences += [f"Residents said the {words[2]} work changed how the {words[3]} is used every day.",
                  (f"Figures for the {words[4]} were published by an independent group, showing {rng.randint(5, 95)} "
                  f"percent more participation than last year."),
                  f"Next year the team plans to extend the {words[5]} to {rng.randint(2, 40)} more districts."]
    rng.shuffle(sentences)
    return {"title": title, "text": " ".join(sentences)}


def answer_for(prompt: str) -> dict[str, dict[str, object]]:
    out = {}
    for dim in dimensions_in(prompt):
        h = int(hashlib.sha256(f"{dim}\x00{prompt}".encode()).hexdigest()[:8], 16)
        out[dim] = {"score": (h % 21) / 2, "evidence": "No evidence in article"}
    return out


class FakeLLMServer:
    """Start with ``with FakeLLMServer(cfg) as srv: srv.url``; ``faults`` is the scripted queue."""

    def __init__(self, config: FakeLLMConfig | None = None):
        self.config = config or FakeLLMConfig()
        self.faults: deque[str] = deque()
        self.stats: Counter = Counter()
        self.prompts: list[str] = []
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._tokens = self._capacity()
        self._last = time.monotonic()
        self._files: dict[str, str] = {}
        self._batches: dict[str, dict] = {}
        self._windows = _Windows(self.config.rate_windows)
        self.billed: list[dict] = []  # the provider's own bill: one entry per answered call
        self.arrivals: list[tuple[float, float, bool]] = []  # (time, tokens, admitted) of rate-limited requests
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="fake-llm")

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hung requests
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeLLMServer:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def inject(self, *faults: str) -> None:
        with self._lock:
            self.faults.extend(faults)

    # -- behaviour -----------------------------------------------------------------------------------
    def _capacity(self) -> float:
        return max(1.0, self.config.requests_per_minute / 60.0 * self.config.window_seconds)

    def _admit(self) -> bool:
        if self.config.requests_per_minute <= 0:
            return True
        with self._lock:
            now = time.monotonic()
            rate = self.config.requests_per_minute / 60.0
            self._tokens = min(self._capacity(), self._tokens + (now - self._last) * rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def _next_fault(self) -> str:
        with self._lock:
            if self.faults:
                return self.faults.popleft()
            for fault, rate in sorted(self.config.fault_rates.items()):
                if self._rng.random() < rate:
                    return fault
        return "ok"

    def _answer_text(self, prompt: str, fault: str, corrective: bool) -> str:
        if is_writer_prompt(prompt):
            article = json.dumps(article_for(prompt))
            return "I cannot write that {article" if fault == "broken" else article
        answer = answer_for(prompt)
        if fault == "missing_dim" and answer:
            answer.pop(next(iter(answer)))
        if fault == "out_of_range" and answer:
            answer[next(iter(answer))]["score"] = 42
        text = json.dumps(answer)
        if fault == "fenced":
            return f"Here is my assessment:\n```json\n{json.dumps(answer, indent=2)}\n```\nThanks."
        if fault == "trailing_comma":
            return text[:-1] + ", // done\n}"
        if fault == "broken":
            return "I cannot produce JSON for this {article"
        return text

    def _admit_windows(self, arrived: float, tokens: float) -> tuple[bool, float]:
        if not self._windows.windows:
            return True, 0.0
        with self._lock:
            ok, wait = self._windows.admit(arrived, tokens)
            self.arrivals.append((arrived, tokens, ok))
            return ok, wait

    def rate_headers(self) -> dict[str, str]:
        with self._lock:
            return self._windows.headers(time.time())

    def bill(self, model: str, prompt_tokens: int, completion_tokens: int, prompt: str, corrective: bool,
             batch: bool = False) -> None:
        with self._lock:
            self.billed.append({"model": model, "input_tokens": prompt_tokens, "output_tokens": completion_tokens,
                                "prompt_sha": hashlib.sha256(prompt.encode()).hexdigest()[:16],
                                "corrective": corrective, "batch": batch})

    def bill_summary(self) -> dict:
        with self._lock:
            calls = list(self.billed)
        return {"calls": len(calls), "input_tokens": sum(c["input_tokens"] for c in calls),
                "output_tokens": sum(c["output_tokens"] for c in calls),
                "batch_calls": sum(c["batch"] for c in calls), "items": calls}

    def _hang(self, alive) -> None:
        """Never answer: hold until the client gives up, the server stops, or hang_seconds pass."""
        deadline = time.monotonic() + self.config.hang_seconds
        while time.monotonic() < deadline and not self._stopping.is_set() and alive():
            time.sleep(0.05)
        with self._lock:
            self.stats["hung_released"] += 1

    def chat(self, prompt: str, corrective: bool, *, tokens: float = 0.0, arrived: float | None = None,
             alive=None, limited: bool = True) -> tuple[int, str, dict]:
        """(status, answer text or error body, extra headers) for one chat request, faults applied.

        Status 0 means no answer at all (a hang, or a client that left before the answer was ready).
        """
        alive = alive or (lambda: True)
        with self._lock:
            self.stats["requests"] += 1
            self.prompts.append(prompt)
        ok, wait = self._admit_windows(arrived if arrived is not None else time.time(), tokens) if limited else (
            True, 0.0)
        if not ok or (limited and not self._admit()):
            wait = wait or self.config.retry_after_seconds
            with self._lock:
                self.stats["rate_limited"] += 1
            return 429, json.dumps({"error": {"message": "rate limit exceeded", "type": "rate_limit"}}), {
                "Retry-After": f"{max(1, math.ceil(wait - 1e-9)):d}" if self._windows.windows
                else f"{self.config.retry_after_seconds:g}", "retry-after-ms": f"{wait * 1000:.0f}"}
        fault = self._next_fault()
        with self._lock:
            self.stats[f"fault_{fault}"] += 1
        if fault == "429":
            return 429, json.dumps({"error": {"message": "injected 429"}}), {
                "Retry-After": f"{self.config.retry_after_seconds:g}"}
        if fault == "500":
            return 500, json.dumps({"error": {"message": "injected server error"}}), {}
        if fault == "auth":
            return 401, json.dumps({"error": {"message": "invalid api key"}}), {}
        if fault == "hang" and not limited:  # a batch item cannot hang the whole batch: it fails instead
            return 500, json.dumps({"error": {"message": "item failed"}}), {}
        if fault == "hang":
            self._hang(alive)
            return 0, "", {}
        delay = self.config.latency_seconds + (self.config.slow_seconds if fault == "slow" else 0.0)
        if delay:
            time.sleep(delay)
        if not alive():
            with self._lock:
                self.stats["abandoned"] += 1
            return 0, "", {}
        with self._lock:
            self.stats["answered"] += 1
        return 200, self._answer_text(prompt, fault, corrective), {}

    # -- wire formats --------------------------------------------------------------------------------
    def _handler(self):
        return type("Handler", (_ProviderHandler,), {"provider": self})

    @staticmethod
    def _count_tokens(text: str) -> int:
        return max(1, len(text) // 4)

    def _conversation(self, messages: list, max_tokens) -> tuple[str, bool, int, float]:
        """(first user prompt, corrective?, prompt tokens of every message, tokens the rate limit counts)."""
        prompt = next((str(m.get("content", "")) for m in messages if m.get("role") == "user"), "")
        corrective = bool(messages) and str(messages[-1].get("content", "")).startswith(CORRECTIVE_PREFIX)
        prompt_tokens = sum(self._count_tokens(str(m.get("content", ""))) for m in messages) if messages else 1
        return prompt, corrective, prompt_tokens, prompt_tokens + int(max_tokens or 0)

    def openai_chat(self, body: dict, arrived: float | None = None, alive=None,
                    batch: bool = False) -> tuple[int, str, dict]:
        messages = body.get("messages") or []
        prompt, corrective, prompt_tokens, limit_tokens = self._conversation(messages, body.get("max_tokens"))
        status, text, headers = self.chat(prompt, corrective, tokens=limit_tokens, arrived=arrived, alive=alive,
                                          limited=not batch)
        if status != 200:
            return status, text, headers
        model = body.get("model", "") + self.config.model_suffix
        self.bill(model, prompt_tokens, self._count_tokens(text), prompt, corrective, batch)
        return 200, json.dumps({
            "id": f"chatcmpl-{uuid.uuid4().hex[:10]}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": self._count_tokens(text),
                      "total_tokens": prompt_tokens + self._count_tokens(text),
                      "prompt_tokens_details": {"cached_tokens": 0}},
        }), headers

    def anthropic_message(self, body: dict, arrived: float | None = None, alive=None,
                          batch: bool = False) -> tuple[int, str, dict]:
        messages = body.get("messages") or []
        prompt, corrective, prompt_tokens, limit_tokens = self._conversation(messages, body.get("max_tokens"))
        status, text, headers = self.chat(prompt, corrective, tokens=limit_tokens, arrived=arrived, alive=alive,
                                          limited=not batch)
        if status == 0:
            return status, text, headers
        if status != 200:
            kind = "rate_limit_error" if status == 429 else "api_error"
            return status, json.dumps({"type": "error", "error": {"type": kind, "message": text}}), headers
        self.bill(body.get("model", "") + self.config.model_suffix, prompt_tokens, self._count_tokens(text), prompt,
                  corrective, batch)
        return 200, json.dumps({
            "id": f"msg_{uuid.uuid4().hex[:10]}", "type": "message", "role": "assistant",
            "model": body.get("model", "") + self.config.model_suffix,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "usage": {"input_tokens": prompt_tokens, "output_tokens": self._count_tokens(text),
                      "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
        }), headers

    def gemini_generate(self, model: str, body: dict, arrived: float | None = None,
                        alive=None) -> tuple[int, str, dict]:
        contents = body.get("contents") or []
        texts = ["".join(p.get("text", "") for p in (c.get("parts") or [])) for c in contents]
        prompt, last = (texts[0], texts[-1]) if texts else ("", "")
        prompt_tokens = sum(self._count_tokens(t) for t in texts) if texts else 1
        max_tokens = (body.get("generationConfig") or {}).get("maxOutputTokens") or 0
        status, text, headers = self.chat(prompt, last.startswith(CORRECTIVE_PREFIX),
                                          tokens=prompt_tokens + int(max_tokens), arrived=arrived, alive=alive)
        if status == 0:
            return status, text, headers
        if status != 200:
            return status, json.dumps({"error": {"code": status, "message": text,
                                                 "status": "RESOURCE_EXHAUSTED" if status == 429 else "INTERNAL"}}), headers
        self.bill(model + self.config.model_suffix, prompt_tokens, self._count_tokens(text), prompt,
                  last.startswith(CORRECTIVE_PREFIX))
        return 200, json.dumps({
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": self._count_tokens(text),
                              "totalTokenCount": prompt_tokens + self._count_tokens(text)},
            "modelVersion": model + self.config.model_suffix,
        }), headers

    # -- batch APIs (complete immediately; the client still polls) ------------------------------------
    def openai_batch(self, body: dict) -> dict:
        bid = f"batch_{uuid.uuid4().hex[:12]}"
        lines = []
        for line in self._files.get(body.get("input_file_id", ""), "").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            status, text, _ = self.openai_chat(item["body"], batch=True)
            lines.append(json.dumps({"id": f"r_{uuid.uuid4().hex[:8]}", "custom_id": item["custom_id"],
                                     "response": {"status_code": status, "body": json.loads(text or "{}")},
                                     "error": None}))
        out_id = f"file-{uuid.uuid4().hex[:12]}"
        self._files[out_id] = "\n".join(lines) + "\n"
        info = {"id": bid, "object": "batch", "status": "completed", "output_file_id": out_id,
                "input_file_id": body.get("input_file_id"), "request_counts": {"total": len(lines)}}
        # First poll says in_progress, then completed: exercises the polling loop.
        self._batches[bid] = {"openai": {**info, "status": "in_progress"}, "final": info}
        threading.Timer(0.2, lambda: self._batches[bid].update(openai=info)).start()
        return {**info, "status": "validating"}

    def anthropic_batch(self, body: dict) -> dict:
        bid = f"msgbatch_{uuid.uuid4().hex[:12]}"
        lines = []
        for req in body.get("requests") or []:
            status, text, _ = self.anthropic_message(req["params"], batch=True)
            data = json.loads(text)
            result = ({"type": "succeeded", "message": data} if status == 200
                      else {"type": "errored", "error": data.get("error", {})})
            lines.append(json.dumps({"custom_id": req["custom_id"], "result": result}))
        info = {"id": bid, "type": "message_batch", "processing_status": "ended",
                "results_url": f"{self.url}/v1/messages/batches/{bid}/results",
                "request_counts": {"succeeded": len(lines)}}
        self._batches[bid] = {"anthropic": {**info, "processing_status": "in_progress", "results_url": None},
                              "results": "\n".join(lines) + "\n"}
        threading.Timer(0.2, lambda: self._batches[bid].update(anthropic=info)).start()
        return {**info, "processing_status": "in_progress", "results_url": None}


class _ProviderHandler(BaseHTTPRequestHandler):
    """HTTP front of a :class:`FakeLLMServer` (``provider``, set on the subclass that ``_handler`` makes): routes
    each request to the provider's OpenAI, Anthropic or Gemini emulation, its batch APIs and its test endpoints."""

    protocol_version = "HTTP/1.1"
    provider: FakeLLMServer

    def log_message(self, *args):  # quiet
        return

    def setup(self):
        super().setup()
        self._arrived: float | None = None
        if _SO_TIMESTAMPNS is not None:
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            except OSError:
                pass

    def handle_one_request(self):
        # A provider counts a request when it reaches its edge, not when one of its threads gets
        # around to it: take the kernel's receive time of the request's first bytes (this server
        # shares a loaded machine with its clients), else the time now.
        self._arrived = self._kernel_arrival()
        super().handle_one_request()

    def _kernel_arrival(self) -> float | None:
        if _SO_TIMESTAMPNS is None:
            return None
        try:
            data, ancillary, _flags, _addr = self.connection.recvmsg(1, socket.CMSG_SPACE(16), socket.MSG_PEEK)
        except OSError:
            return None
        for level, kind, value in ancillary:
            if data and level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= 16:
                sec, nsec = struct.unpack("qq", value[:16])
                if sec > 0:
                    return sec + nsec / 1e9
        return None

    def _send(self, status: int, body: str | bytes, headers: dict | None = None,
              content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client went away (killed, or timed out on a "slow" fault)

    def _authorized(self) -> bool:
        key = self.provider.config.api_key
        if not key:
            return True
        given = (self.headers.get("Authorization", "").removeprefix("Bearer ")
                 or self.headers.get("x-api-key", "") or self.headers.get("x-goog-api-key", ""))
        return given == key

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        if not self._authorized():
            return self._send(401, json.dumps({"error": {"message": "invalid api key"}}))
        path = self.path.split("?")[0]
        if path == "/_stats":
            return self._send(200, json.dumps(dict(self.provider.stats)))
        if path == "/_bill":
            return self._send(200, json.dumps(self.provider.bill_summary()))
        if path == "/_arrivals":
            with self.provider._lock:
                return self._send(200, json.dumps(self.provider.arrivals))
        m = re.match(r"^/v1/batches/([^/]+)$", path)
        if m and m.group(1) in self.provider._batches:
            return self._send(200, json.dumps(self.provider._batches[m.group(1)]["openai"]))
        m = re.match(r"^/v1/files/([^/]+)/content$", path)
        if m and m.group(1) in self.provider._files:
            return self._send(200, self.provider._files[m.group(1)], content_type="application/jsonl")
        m = re.match(r"^/v1/messages/batches/([^/]+)(/results)?$", path)
        if m and m.group(1) in self.provider._batches:
            batch = self.provider._batches[m.group(1)]
            if m.group(2):
                return self._send(200, batch["results"], content_type="application/jsonl")
            return self._send(200, json.dumps(batch["anthropic"]))
        return self._send(404, json.dumps({"error": {"message": f"no route {path}"}}))

    def _alive(self) -> bool:
        """False once the client closed the connection (it timed out or was killed)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return True
            return self.connection.recv(1, socket.MSG_PEEK) != b""
        except (OSError, ValueError):
            return False

    def _reply(self, status: int, text: str, headers: dict) -> None:
        if status == 0:  # no answer: drop the connection
            self.close_connection = True
            return None
        return self._send(status, text, {**headers, **self.provider.rate_headers()})

    def do_POST(self):
        arrived = self._arrived or time.time()  # the provider counts a request when it arrives
        raw = self._body()
        path = self.path.split("?")[0]
        if not self._authorized():
            with self.provider._lock:
                self.provider.stats["unauthorized"] += 1
            return self._send(401, json.dumps({"error": {"message": "invalid api key"}}))
        if path == "/v1/files":
            return self._upload(raw)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._send(400, json.dumps({"error": {"message": "body is not JSON"}}))
        with self.provider._lock:
            self.provider.bodies.append(body)
            self.provider.headers.append(dict(self.headers))
        ctx = {"arrived": arrived, "alive": self._alive}
        if path in ("/v1/chat/completions", "/chat/completions"):
            return self._reply(*self.provider.openai_chat(body, **ctx))
        if path == "/v1/messages":
            return self._reply(*self.provider.anthropic_message(body, **ctx))
        if path == "/v1/batches":
            return self._send(200, json.dumps(self.provider.openai_batch(body)))
        if path == "/v1/messages/batches":
            return self._send(200, json.dumps(self.provider.anthropic_batch(body)))
        m = _GEMINI.match(path)
        if m:
            return self._reply(*self.provider.gemini_generate(m.group(1), body, **ctx))
        return self._send(404, json.dumps({"error": {"message": f"no route {path}"}}))

    def _upload(self, raw: bytes) -> None:
        # multipart/form-data: take the part that holds the JSONL file
        ctype = self.headers.get("Content-Type", "")
        boundary = ctype.split("boundary=")[-1].encode()
        content = b""
        for part in raw.split(b"--" + boundary):
            if b'name="file"' in part:
                content = part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
        fid = f"file-{uuid.uuid4().hex[:12]}"
        self.provider._files[fid] = content.decode()
        return self._send(200, json.dumps({"id": fid, "object": "file", "purpose": "batch"}))


def main() -> None:  # pragma: no cover - manual use: python -m distillery.testing.fake_provider
    import argparse
    import signal

    p = argparse.ArgumentParser(description="Fake LLM provider server (OpenAI/Anthropic/Gemini wire formats)")
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--rps", type=float, default=10, help="requests per fixed one-second window (0: no limit)")
    p.add_argument("--window", choices=["fixed", "sliding"], default="fixed")
    p.add_argument("--config-json", default="", help="a FakeLLMConfig as JSON (overrides the flags above)")
    args = p.parse_args()
    if args.config_json:
        cfg = FakeLLMConfig(**json.loads(args.config_json))
    else:
        windows = [{"unit": "requests", "limit": args.rps, "seconds": 1.0, "kind": args.window}] if args.rps else []
        cfg = FakeLLMConfig(latency_seconds=args.latency, rate_windows=windows)
    srv = FakeLLMServer(cfg).start()
    print(srv.url, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    srv.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
