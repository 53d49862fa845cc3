"""Per-method authorization: each role's token against every method of the four services, over real sockets.

A real GrpcServer (the interceptors every service runs) serves the four generated services; their base
servicers answer UNIMPLEMENTED, so a call that got past authorization says so, and one that did not ends
UNAUTHENTICATED or PERMISSION_DENIED before any servicer code runs. Methods are enumerated from the service
descriptors: an RPC added later is covered (and admin-only until it is placed, unless it only reads).
"""

from __future__ import annotations

from typing import ClassVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic_settings import SettingsConfigDict

from distillery.config import ServiceSettings
from distillery.rpc.server import GrpcServer, ServiceBinding
from distillery.v1 import (
    oracle_pb2,
    oracle_pb2_grpc,
    prefilter_pb2,
    prefilter_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)

pytestmark = pytest.mark.integration

TOKENS = {"scoring": "scoring-token-0123", "labelling": "labelling-token-0123", "admin": "admin-token-0123",
          "legacy": "all-roles-token-0123"}
SERVICES = [
    (scoring_pb2, "ScoringService", scoring_pb2_grpc.add_ScoringServiceServicer_to_server,
     scoring_pb2_grpc.ScoringServiceServicer),
    (prefilter_pb2, "PrefilterService", prefilter_pb2_grpc.add_PrefilterServiceServicer_to_server,
     prefilter_pb2_grpc.PrefilterServiceServicer),
    (oracle_pb2, "OracleService", oracle_pb2_grpc.add_OracleServiceServicer_to_server,
     oracle_pb2_grpc.OracleServiceServicer),
    (trainer_pb2, "TrainerService", trainer_pb2_grpc.add_TrainerServiceServicer_to_server,
     trainer_pb2_grpc.TrainerServiceServicer),
]
# Who may call what (docs/operations.md, "Roles"). Methods not listed: read-only names (Get/List/Watch/Describe)
# are open to every role, anything else is admin-only.
EXPECTED = {
    "ScoringService": {"Score": "scoring", "ScoreBatch": "scoring", "ScoreStream": "scoring"},
    "PrefilterService": {"Check": "scoring", "CheckStream": "scoring"},
    "OracleService": {"Label": "labelling", "LabelStream": "labelling"},
    "TrainerService": {"StartJob": "admin", "Promote": "admin", "CancelJob": "admin", "Rollback": "admin",
                       "GetJob": "any", "WatchJob": "any", "ListJobs": "any", "ListModels": "any"},
}


class _Settings(ServiceSettings):
    section: ClassVar[str] = "roles_test"
    model_config = SettingsConfigDict(env_prefix="DISTILLERY_ROLES_TEST_", extra="forbid")


def _methods():
    for module, service, _, _ in SERVICES:
        descriptor = module.DESCRIPTOR.services_by_name[service]
        for method in descriptor.methods:
            yield service, method


def _expected(service: str, name: str) -> str:
    known = EXPECTED[service].get(name)
    if known:
        return known
    return "any" if name.startswith(("Get", "List", "Watch", "Describe")) else "admin"


def _allowed(role: str, need: str) -> bool:
    return role in ("admin", "legacy") or need == "any" or need == role


@pytest.fixture(scope="module")
def server():
    settings = _Settings.load(None, host="127.0.0.1", port=0, metrics_port=0,
                              auth_scoring_token=TOKENS["scoring"], auth_labelling_token=TOKENS["labelling"],
                              auth_admin_token=f"{TOKENS['admin']},admin-token-old", auth_token=TOKENS["legacy"])
    bindings = [ServiceBinding(add, _reached(base), f"distillery.v1.{name}") for _, name, add, base in SERVICES]
    srv = GrpcServer("roles_test", settings, bindings).start()
    yield srv
    srv.stop(0)


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


def _invoke(channel, service: str, method, metadata) -> grpc.StatusCode:
    path = f"/distillery.v1.{service}/{method.name}"
    request = method.input_type._concrete_class()
    if method.client_streaming and method.server_streaming:
        call = channel.stream_stream(path, request_serializer=lambda m: m.SerializeToString())
        responses = call(iter([request]), metadata=metadata, timeout=10)
    elif method.server_streaming:
        call = channel.unary_stream(path, request_serializer=lambda m: m.SerializeToString())
        responses = call(request, metadata=metadata, timeout=10)
    elif method.client_streaming:
        call = channel.stream_unary(path, request_serializer=lambda m: m.SerializeToString())
        responses = [call(iter([request]), metadata=metadata, timeout=10)]
    else:
        call = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString())
        responses = [call(request, metadata=metadata, timeout=10)]
    try:
        list(responses)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _call(channel, service: str, method, metadata) -> grpc.StatusCode:
    try:
        return _invoke(channel, service, method, metadata)
    except grpc.RpcError as exc:
        return exc.code()


def _reached(base):
    """``base`` (a generated servicer) whose every method ends UNIMPLEMENTED: proof that authorization let it by."""

    def reached(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "reached the servicer")

    names = [n for n in vars(base) if n[:1].isupper()]
    return type(f"Reached{base.__name__}", (base,), {n: reached for n in names})()


@pytest.mark.parametrize("role", list(TOKENS))
def test_every_method_admits_exactly_the_roles_it_needs(channel, role):
    problems = []
    for service, method in _methods():
        need = _expected(service, method.name)
        code = _call(channel, service, method, [("authorization", f"Bearer {TOKENS[role]}")])
        want = grpc.StatusCode.UNIMPLEMENTED if _allowed(role, need) else grpc.StatusCode.PERMISSION_DENIED
        if code != want:
            problems.append(f"{service}/{method.name} as {role}: {code.name}, expected {want.name}")
    assert not problems, problems


def test_no_token_a_wrong_token_or_another_scheme_is_unauthenticated(channel):
    for service, method in _methods():
        for metadata in ([], [("authorization", "Bearer nope")], [("authorization", f"Basic {TOKENS['admin']}")],
                         [("authorization", TOKENS["admin"])], [("authorization", "Bearer ")]):
            assert _call(channel, service, method, metadata) == grpc.StatusCode.UNAUTHENTICATED, (method, metadata)


def test_the_bearer_scheme_is_case_insensitive_and_rotation_tokens_both_work(channel):
    promote = next(m for s, m in _methods() if s == "TrainerService" and m.name == "Promote")
    for header in (f"bearer {TOKENS['admin']}", f"BEARER {TOKENS['admin']}", f"Bearer  {TOKENS['admin']} ",
                   "Bearer admin-token-old"):
        assert _call(channel, "TrainerService", promote, [("authorization", header)]) == \
            grpc.StatusCode.UNIMPLEMENTED, header


def test_denials_name_the_role_needed_and_never_the_token(channel):
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Promote(trainer_pb2.PromoteRequest(), metadata=[("authorization", f"Bearer {TOKENS['scoring']}")])
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "admin role" in err.value.details() and TOKENS["scoring"] not in err.value.details()


def test_health_stays_open_and_reflection_needs_a_token(channel):
    assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
        health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with pytest.raises(grpc.RpcError) as err:
        list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    replies = stub.ServerReflectionInfo(iter([request]), timeout=5,
                                        metadata=[("authorization", f"Bearer {TOKENS['scoring']}")])
    assert "distillery.v1.TrainerService" in {s.name for r in replies for s in r.list_services_response.service}


def test_reflection_follows_its_setting():
    settings = _Settings.load(None, host="127.0.0.1", port=0, metrics_port=0, reflection=False)
    srv = GrpcServer("roles_test_noreflect", settings, []).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            with pytest.raises(grpc.RpcError) as err:
                list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                               timeout=5))
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                health_pb2.HealthCheckResponse.SERVING
    finally:
        srv.stop(0)


def test_auth_required_without_a_token_refuses_to_serve():
    settings = _Settings.load(None, host="127.0.0.1", port=0, metrics_port=0, auth_required=True)
    with pytest.raises(OSError, match="auth_required"):
        GrpcServer("roles_test_required", settings, [])
