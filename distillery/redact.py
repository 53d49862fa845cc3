"""Errors say what, never where: scrub server details from text that leaves the process.

Status details, stream item errors, job errors and dead-letter headers go to clients and to whoever reads
a topic. They must not carry an absolute path, the host name, a stack frame or a secret. :func:`public`
replaces such parts with placeholders; when it had to, the full text goes to the server log under an
incident id that the public text carries ("... (incident 3f2a9c1e0b7d; details in the server log)").
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import uuid

logger = logging.getLogger(__name__)

# An absolute POSIX path of at least two components ("/srv/x", "/tmp/pytest-1/reg"), a file:// URI, or a
# Windows drive path. "uplifting/v1" (relative) and "/v1" (one component, e.g. a ref suffix) stay.
_POSIX_PATH = re.compile(r"(?<![\w.~/-])/(?:[^\s'\"/:,;()\[\]{}<>]+/)+[^\s'\",;:()\[\]{}<>]*")
_FILE_URI = re.compile(r"file://[^\s'\",;()\[\]{}<>]*")
_WINDOWS_PATH = re.compile(r"\b[A-Za-z]:\\[^\s'\",;]*")
_HOME_PATH = re.compile(r"~/[^\s'\",;:()\[\]{}<>]*")
_URL_CREDENTIALS = re.compile(r"([a-z][a-z0-9+.-]*://)[^\s/@:]+(?::[^\s/@]*)?@", re.IGNORECASE)
_STACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]*\", line \d+")
_INCIDENT = re.compile(r"\(incident [0-9a-f]{12}; details in the server log\)")

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Never let ``value`` (a token, an API key) appear in public text; short values are ignored."""
    if value and len(value) >= 8:
        with _lock:
            _secrets.add(value)


def _hostnames() -> list[str]:
    names = set()
    try:
        names.add(socket.gethostname())
        names.add(socket.getfqdn())
    except OSError:
        pass
    # "localhost" and one-label names shorter than 4 characters would mangle ordinary words.
    return sorted((n for n in names if n and len(n) >= 4 and n != "localhost"), key=len, reverse=True)


def scrub(text: str) -> str:
    """``text`` with paths, host names, stack frames and registered secrets replaced by placeholders."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "<secret>")
    if _STACK.search(text):
        return "an internal error occurred"
    text = _URL_CREDENTIALS.sub(r"\1<secret>@", text)  # postgresql://user:password@db -> postgresql://<secret>@db
    text = _FILE_URI.sub("<path>", text)
    text = _POSIX_PATH.sub("<path>", text)
    text = _WINDOWS_PATH.sub("<path>", text)
    text = _HOME_PATH.sub("<path>", text)
    for host in _hostnames():
        text = re.sub(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", "<host>", text)
    return text


def public(text: str, *, what: str = "error") -> str:
    """``text`` fit for a client or a topic; when anything was scrubbed, the detail is logged with an incident
    id that the returned text carries."""
    clean = scrub(text)
    if clean == text or _INCIDENT.search(text):
        return clean
    incident = uuid.uuid4().hex[:12]
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:  # the log keeps paths and hosts, never a secret
        text = text.replace(secret, "<secret>")
    logger.warning("%s detail withheld from the client (incident %s): %s", what, incident, text)
    return f"{clean} (incident {incident}; details in the server log)"
