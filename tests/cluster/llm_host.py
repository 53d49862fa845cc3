"""The paid LLM API as its own host: the project's strict fake provider (distillery/testing/fake_provider.py)
on 0.0.0.0:PORT, enforcing a per-second request window exactly like a provider (429 + Retry-After) and
keeping its own bill (``GET /_bill``, ``/_stats``). ``llm_host.py PORT API_KEY REQUESTS_PER_SECOND``."""

from __future__ import annotations

import sys
import threading
from http.server import ThreadingHTTPServer

from distillery.testing.fake_provider import FakeLLMConfig, FakeLLMServer


def main(port: int, api_key: str, per_second: int) -> None:
    server = FakeLLMServer(FakeLLMConfig(api_key=api_key, rate_windows=[
        {"unit": "requests", "limit": per_second, "seconds": 1, "kind": "sliding"}]))
    # the fake binds loopback; on its own host it must listen on the host's address
    server._httpd.server_close()
    server._httpd = ThreadingHTTPServer(("0.0.0.0", port), server._handler())
    server._httpd.daemon_threads = True
    server._thread = threading.Thread(target=server._httpd.serve_forever, daemon=True, name="fake-llm")
    server.start()
    print(f"fake LLM provider on 0.0.0.0:{port}, {per_second} requests/s", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
