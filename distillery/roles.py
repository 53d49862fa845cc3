"""Who may call what: bearer tokens carry roles, and every method needs one of a set of roles.

Three roles, one token (or several, for rotation) each:

* ``scoring``   — ScoringService and PrefilterService (the clients that score articles);
* ``labelling`` — OracleService Label/LabelStream (the clients that ask the oracle);
* ``admin``     — everything, including what changes the system: StartJob, CancelJob, Promote, Rollback,
  budget changes and any method not listed here (a new RPC is admin-only until it is placed).

Read-only methods (``Get*``, ``List*``, ``Watch*``, ``Describe*``) need any valid token. Health checks need
none (probes carry no token). Reflection needs any valid token and is served only when enabled.

The settings' ``auth_token`` (the single token of earlier releases) keeps working: it holds every role. Each
token setting may hold several comma-separated tokens, so a new token can be added before the old one is
removed (rotation without downtime, docs/operations.md). This module knows nothing of gRPC: the gRPC
interceptor (:mod:`distillery.rpc.interceptors`) and any HTTP front end share it.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Iterable, Mapping

HEALTH_PREFIX = "/grpc.health."
REFLECTION_PREFIX = "/grpc.reflection."
READ_ONLY_PREFIXES = ("Get", "List", "Watch", "Describe")


class Role(str, enum.Enum):
    SCORING = "scoring"
    LABELLING = "labelling"
    ADMIN = "admin"


ALL_ROLES = frozenset(Role)
# Service (full proto name) -> method -> the role it needs besides admin. Methods of these services that are not
# listed fall back to the read-only rule, then to admin.
METHOD_ROLES: Mapping[str, Mapping[str, Role]] = {
    "distillery.v1.ScoringService": {"Score": Role.SCORING, "ScoreBatch": Role.SCORING,
                                     "ScoreStream": Role.SCORING},
    "distillery.v1.PrefilterService": {"Check": Role.SCORING, "CheckStream": Role.SCORING},
    "distillery.v1.OracleService": {"Label": Role.LABELLING, "LabelStream": Role.LABELLING},
}


def required_roles(full_method: str) -> frozenset[Role] | None:
    """The roles of which a caller of ``/package.Service/Method`` needs one; None when the method is open."""
    if full_method.startswith(HEALTH_PREFIX):
        return None
    if full_method.startswith(REFLECTION_PREFIX):
        return ALL_ROLES
    service, _, method = full_method.lstrip("/").partition("/")
    role = METHOD_ROLES.get(service, {}).get(method)
    if role is not None:
        return frozenset({role, Role.ADMIN})
    if method.startswith(READ_ONLY_PREFIXES):
        return ALL_ROLES
    return frozenset({Role.ADMIN})


def split_tokens(value: str | None) -> list[str]:
    """A token setting's tokens: comma-separated (old and new during a rotation), blanks ignored."""
    return [t.strip() for t in (value or "").split(",") if t.strip()]


def bearer_token(header: str | bytes | None) -> str | None:
    """The token of an ``authorization`` header value; the scheme ``Bearer`` is case-insensitive (RFC 7235)."""
    if header is None:
        return None
    if isinstance(header, bytes | bytearray):
        header = header.decode("utf-8", "replace")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class TokenRoles:
    """Token -> roles, compared in constant time; tokens are never logged or shown."""

    def __init__(self, tokens: Mapping[Role | None, Iterable[str]]):
        """``tokens[None]`` are all-role tokens (``auth_token``); ``tokens[role]`` hold one role."""
        self._entries: list[tuple[bytes, frozenset[Role]]] = []
        for role, values in tokens.items():
            roles = ALL_ROLES if role is None else frozenset({role})
            for value in values:
                self._entries.append((value.encode(), roles))

    @classmethod
    def from_settings(cls, settings) -> TokenRoles:
        def secret(name: str) -> str:
            value = getattr(settings, name, None)
            return value.get_secret_value() if value is not None else ""

        return cls({None: split_tokens(secret("auth_token")),
                    Role.SCORING: split_tokens(secret("auth_scoring_token")),
                    Role.LABELLING: split_tokens(secret("auth_labelling_token")),
                    Role.ADMIN: split_tokens(secret("auth_admin_token"))})

    def __bool__(self) -> bool:
        return bool(self._entries)

    def tokens(self) -> list[str]:
        return [t.decode() for t, _ in self._entries]

    def roles_of(self, token: str | None) -> frozenset[Role] | None:
        """The roles ``token`` holds, or None when it is no known token."""
        if not token:
            return None
        given = token.encode()
        found: set[Role] = set()
        matched = False
        for expected, roles in self._entries:  # every entry, so the time does not depend on which matched
            if hmac.compare_digest(given, expected):
                matched = True
                found |= roles
        return frozenset(found) if matched else None


class Decision(enum.Enum):
    ALLOW = "allow"
    UNAUTHENTICATED = "unauthenticated"
    DENIED = "denied"


def authorize(table: TokenRoles, full_method: str, authorization: str | bytes | None) -> Decision:
    """Whether a call of ``full_method`` with this ``authorization`` header value may proceed."""
    needed = required_roles(full_method)
    if needed is None:
        return Decision.ALLOW
    held = table.roles_of(bearer_token(authorization))
    if held is None:
        return Decision.UNAUTHENTICATED
    return Decision.ALLOW if held & needed else Decision.DENIED


def describe_need(full_method: str) -> str:
    """'the admin role' / 'one of the scoring or admin roles' for a denial message (no token shown)."""
    needed = sorted(r.value for r in (required_roles(full_method) or ()))
    return f"the {needed[0]} role" if len(needed) == 1 else f"one of the {' or '.join(needed)} roles"
