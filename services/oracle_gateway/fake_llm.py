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
``"ok"``) and/or at random with given rates. A requests-per-minute limit is enforced like a provider
does (a token bucket holding ``window_seconds`` of quota); over it the server answers 429 with
``Retry-After``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_SCHEMA = re.compile(r"JSON Schema:\s*(\{.*\})\s*$", re.MULTILINE)
_GEMINI = re.compile(r"^/v1beta/models/([^/:]+):generateContent$")
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

    def chat(self, prompt: str, corrective: bool) -> tuple[int, str, dict]:
        """(status, answer text or error body, extra headers) for one chat request, faults applied."""
        with self._lock:
            self.stats["requests"] += 1
            self.prompts.append(prompt)
        if not self._admit():
            with self._lock:
                self.stats["rate_limited"] += 1
            return 429, json.dumps({"error": {"message": "rate limit exceeded", "type": "rate_limit"}}), {
                "Retry-After": f"{self.config.retry_after_seconds:g}"}
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
        delay = self.config.latency_seconds + (self.config.slow_seconds if fault == "slow" else 0.0)
        if delay:
            time.sleep(delay)
        with self._lock:
            self.stats["answered"] += 1
        return 200, self._answer_text(prompt, fault, corrective), {}

    # -- wire formats --------------------------------------------------------------------------------
    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                return

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
                key = server.config.api_key
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
                    return self._send(200, json.dumps(dict(server.stats)))
                m = re.match(r"^/v1/batches/([^/]+)$", path)
                if m and m.group(1) in server._batches:
                    return self._send(200, json.dumps(server._batches[m.group(1)]["openai"]))
                m = re.match(r"^/v1/files/([^/]+)/content$", path)
                if m and m.group(1) in server._files:
                    return self._send(200, server._files[m.group(1)], content_type="application/jsonl")
                m = re.match(r"^/v1/messages/batches/([^/]+)(/results)?$", path)
                if m and m.group(1) in server._batches:
                    batch = server._batches[m.group(1)]
                    if m.group(2):
                        return self._send(200, batch["results"], content_type="application/jsonl")
                    return self._send(200, json.dumps(batch["anthropic"]))
                return self._send(404, json.dumps({"error": {"message": f"no route {path}"}}))

            def do_POST(self):
                raw = self._body()
                path = self.path.split("?")[0]
                if not self._authorized():
                    return self._send(401, json.dumps({"error": {"message": "invalid api key"}}))
                if path == "/v1/files":
                    return self._upload(raw)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return self._send(400, json.dumps({"error": {"message": "body is not JSON"}}))
                with server._lock:
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                if path in ("/v1/chat/completions", "/chat/completions"):
                    status, text, headers = server.openai_chat(body)
                    return self._send(status, text, headers)
                if path == "/v1/messages":
                    status, text, headers = server.anthropic_message(body)
                    return self._send(status, text, headers)
                if path == "/v1/batches":
                    return self._send(200, json.dumps(server.openai_batch(body)))
                if path == "/v1/messages/batches":
                    return self._send(200, json.dumps(server.anthropic_batch(body)))
                m = _GEMINI.match(path)
                if m:
                    status, text, headers = server.gemini_generate(m.group(1), body)
                    return self._send(status, text, headers)
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
                server._files[fid] = content.decode()
                return self._send(200, json.dumps({"id": fid, "object": "file", "purpose": "batch"}))

        return Handler

    @staticmethod
    def _count_tokens(text: str) -> int:
        return max(1, len(text) // 4)

    def openai_chat(self, body: dict) -> tuple[int, str, dict]:
        messages = body.get("messages") or []
        prompt = next((m.get("content", "") for m in messages if m.get("role") == "user"), "")
        corrective = bool(messages) and str(messages[-1].get("content", "")).startswith(CORRECTIVE_PREFIX)
        status, text, headers = self.chat(prompt, corrective)
        if status != 200:
            return status, text, headers
        model = body.get("model", "") + self.config.model_suffix
        return 200, json.dumps({
            "id": f"chatcmpl-{uuid.uuid4().hex[:10]}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": self._count_tokens(prompt), "completion_tokens": self._count_tokens(text),
                      "total_tokens": self._count_tokens(prompt) + self._count_tokens(text),
                      "prompt_tokens_details": {"cached_tokens": 0}},
        }), headers

    def anthropic_message(self, body: dict) -> tuple[int, str, dict]:
        messages = body.get("messages") or []
        prompt = next((m.get("content", "") for m in messages if m.get("role") == "user"), "")
        corrective = bool(messages) and str(messages[-1].get("content", "")).startswith(CORRECTIVE_PREFIX)
        status, text, headers = self.chat(prompt, corrective)
        if status != 200:
            kind = "rate_limit_error" if status == 429 else "api_error"
            return status, json.dumps({"type": "error", "error": {"type": kind, "message": text}}), headers
        return 200, json.dumps({
            "id": f"msg_{uuid.uuid4().hex[:10]}", "type": "message", "role": "assistant",
            "model": body.get("model", "") + self.config.model_suffix,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "usage": {"input_tokens": self._count_tokens(prompt), "output_tokens": self._count_tokens(text),
                      "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
        }), headers

    def gemini_generate(self, model: str, body: dict) -> tuple[int, str, dict]:
        contents = body.get("contents") or []
        prompt = "".join(p.get("text", "") for p in (contents[0].get("parts") if contents else []) or [])
        last = "".join(p.get("text", "") for p in (contents[-1].get("parts") if contents else []) or [])
        status, text, headers = self.chat(prompt, last.startswith(CORRECTIVE_PREFIX))
        if status != 200:
            return status, json.dumps({"error": {"code": status, "message": text,
                                                 "status": "RESOURCE_EXHAUSTED" if status == 429 else "INTERNAL"}}), headers
        return 200, json.dumps({
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": self._count_tokens(prompt), "candidatesTokenCount": self._count_tokens(text),
                              "totalTokenCount": self._count_tokens(prompt) + self._count_tokens(text)},
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
            status, text, _ = self.openai_chat(item["body"])
            lines.append(json.dumps({"id": f"r_{uuid.uuid4().hex[:8]}", "custom_id": item["custom_id"],
                                     "response": {"status_code": status, "body": json.loads(text)}, "error": None}))
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
            status, text, _ = self.anthropic_message(req["params"])
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


def main() -> None:  # pragma: no cover - manual use: python -m services.oracle_gateway.fake_llm
    import argparse

    p = argparse.ArgumentParser(description="Fake LLM provider server (OpenAI/Anthropic/Gemini wire formats)")
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--rpm", type=float, default=600)
    args = p.parse_args()
    srv = FakeLLMServer(FakeLLMConfig(latency_seconds=args.latency, requests_per_minute=args.rpm)).start()
    print(srv.url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    main()
