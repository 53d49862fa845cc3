"""One exception type for failed calls, carrying the gRPC status code name and the server's message."""

from __future__ import annotations

import grpc


class ClientError(Exception):
    """A call failed: ``code`` is the gRPC status name (``NOT_FOUND``, ``UNAVAILABLE`` ...)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc(cls, exc: grpc.RpcError) -> ClientError:
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else str(exc)
        return cls(code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN", details or "")
