"""Hostile identifiers against every RPC and topic that takes one: INVALID_ARGUMENT (or a dead letter) naming the
field, and no file outside the services' own folders changes.

The four services run as processes, with auth off (the default of ``distillery up``), the trainer's registry
next to a second registry ("victim") that the first exploit reached through ``../..`` in a filter name.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from distillery.bus import ensure_topics
from distillery.bus import headers as h
from distillery.bus import topics as t
from distillery.filters import FilterCatalog
from distillery.messages import from_record
from distillery.runtime.supervisor import start_service
from distillery.synthetic import generate, scores_of
from distillery.v1 import (
    common_pb2,
    events_pb2,
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
confluent_kafka = pytest.importorskip("confluent_kafka")

FILTERS = Path(__file__).resolve().parents[2] / "filters"
FILTER = "uplifting"
VICTIM_VERSION = "20260101T000000-abcdef"
HOSTILE = {
    "dot-dot": "..",
    "traversal": f"../../victim/registry/{FILTER}",
    "slash": "a/b",
    "absolute": "/etc/passwd",
    "backslash": "..\\..\\victim",
    "percent-encoded": "%2e%2e%2fvictim",
    "nul": f"{FILTER}\x00",
    "very-long": "a" * 5000,
    "cyrillic-look-alike": "upl\u0456fting",
    "fullwidth-look-alike": "\uff55\uff50\uff4c\uff49\uff46\uff54\uff49\uff4e\uff47",
    "trailing-newline": f"{FILTER}\n",
    "upper-case": FILTER.upper(),
}


def _ref(name: str = FILTER, version: int = 1) -> common_pb2.FilterRef:
    return common_pb2.FilterRef(name=name, version=version)


def _snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, str]:
    """Content hash of every file under ``root`` outside ``skip`` (the services' own state and logs)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(s == path or s in path.parents for s in skip):
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory, kafka_bootstrap):
    from distillery.calibration import Calibration
    from distillery.registry import ModelRegistry
    from distillery.students import compose_text, make_student

    root = tmp_path_factory.mktemp("hostile")
    # A registry the services must never reach: a promoted version of the same filter, written by hand.
    victim = root / "victim" / "registry" / FILTER
    (victim / "v1" / VICTIM_VERSION).mkdir(parents=True)
    (victim / "v1" / VICTIM_VERSION / "manifest.json").write_text(
        f'{{"filter_name": "{FILTER}", "filter_version": 1, "version_id": "{VICTIM_VERSION}", "kind": "lexical", '
        '"dimensions": []}')
    (victim / "promoted.json").write_text(f'{{"version_id": "{VICTIM_VERSION}", "history": []}}')
    (root / "secret.jsonl").write_text('{"id": "s", "text": "secret"}\n')

    spec = FilterCatalog.load(FILTERS, [FILTER]).get(FILTER)
    records = list(generate(spec, 60, seed=3))
    texts = [compose_text(r["title"], r.get("text") or "") for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records], dtype=float)
    student = make_student("lexical", spec.dimension_names, filter=spec.name).fit(texts, y)
    registry = ModelRegistry(root / "state" / "inference" / "registry")
    info = registry.register(spec, student, Calibration.fit(student.predict(texts), y, spec.dimension_names))
    registry.promote(spec.name, info.version_id)

    prefix = f"hostile{time.monotonic_ns() % 10**8}."
    ensure_topics(kafka_bootstrap, [prefix + n for n in (*t.TOPICS, t.dlq(t.ARTICLES_CANDIDATES),
                                                         t.dlq(t.ORACLE_REQUESTS))])

    def start(name: str):
        args = ["--filters-dir", str(FILTERS), "--filter", FILTER, "--state-dir", str(root / "state" / name),
                "--log-level", "WARNING"]
        env = {}
        if name == "inference":
            args += ["--kafka-bootstrap", kafka_bootstrap]
            env = {"DISTILLERY_INFERENCE_CANDIDATES_TOPIC": prefix + t.ARTICLES_CANDIDATES,
                   "DISTILLERY_INFERENCE_SCORED_TOPIC": prefix + t.ARTICLES_SCORED,
                   "DISTILLERY_INFERENCE_ORACLE_REQUESTS_TOPIC": prefix + t.ORACLE_REQUESTS,
                   "DISTILLERY_INFERENCE_MODELS_EVENTS_TOPIC": prefix + t.MODELS_EVENTS,
                   "DISTILLERY_INFERENCE_CONSUMER_GROUP": prefix + "inference", "DISTILLERY_INFERENCE_AUDIT_RATE": "0",
                   "DISTILLERY_INFERENCE_UNCERTAIN_DAILY_BUDGET": "0", "DISTILLERY_INFERENCE_RELOAD_POLL_SECONDS": "0"}
        elif name == "oracle_gateway":
            args += ["--kafka-bootstrap", kafka_bootstrap, "--kafka-topic-prefix", prefix, "--kafka-group",
                     prefix + name]
        elif name == "trainer":
            env = {"DISTILLERY_TRAINER_DATA_ROOT": str(root / "state" / "trainer" / "data")}
        return start_service(name, args=args, env=env, log_dir=root / "logs")

    names = ("prefilter", "oracle_gateway", "trainer", "inference")
    with ThreadPoolExecutor(len(names)) as pool:
        services = dict(zip(names, pool.map(start, names)))
    skip = (root / "state", root / "logs")
    before = _snapshot(root, skip)
    try:
        yield {"root": root, "services": services, "prefix": prefix, "model": info.version_id,
               "article": from_record(records[0]), "check_untouched": lambda: _snapshot(root, skip) == before}
    finally:
        for svc in services.values():
            svc.stop()


def _targets(article):
    """(label, service, method, request builder taking the hostile value, field the error must name, streaming)."""
    score = lambda v: scoring_pb2.ScoreRequest(article=article, filters=[_ref(v)])
    label = {"article": article, "filter": _ref(), "reason": oracle_pb2.LABEL_REASON_TRAINING}
    return [
        ("Score", "inference", "Score", score, "filters[0].name", False),
        ("ScoreBatch", "inference", "ScoreBatch",
         lambda v: scoring_pb2.ScoreBatchRequest(articles=[article], filters=[_ref(v)]), "filters[0].name", False),
        ("ScoreStream", "inference", "ScoreStream", score, "filters[0].name", True),
        ("Check", "prefilter", "Check",
         lambda v: prefilter_pb2.CheckRequest(articles=[article], filters=[_ref(v)]), "filters[0].name", False),
        ("CheckStream", "prefilter", "CheckStream",
         lambda v: prefilter_pb2.CheckStreamRequest(article=article, filters=[_ref(v)]), "filters[0].name", True),
        ("Label.filter", "oracle_gateway", "Label",
         lambda v: oracle_pb2.LabelRequest(**{**label, "filter": _ref(v)}), "filter.name", False),
        ("Label.oracle", "oracle_gateway", "Label", lambda v: oracle_pb2.LabelRequest(**label, oracle=v), "oracle",
         False),
        ("Label.job_id", "oracle_gateway", "Label", lambda v: oracle_pb2.LabelRequest(**label, job_id=v), "job_id",
         False),
        ("LabelStream.filter", "oracle_gateway", "LabelStream",
         lambda v: oracle_pb2.LabelRequest(**{**label, "filter": _ref(v)}), "filter.name", True),
        ("LabelStream.oracle", "oracle_gateway", "LabelStream",
         lambda v: oracle_pb2.LabelRequest(**label, oracle=v), "oracle", True),
        ("StartJob.filter", "trainer", "StartJob", lambda v: trainer_pb2.StartJobRequest(filter=_ref(v)),
         "filter.name", False),
        ("StartJob.filters", "trainer", "StartJob",
         lambda v: trainer_pb2.StartJobRequest(filters=[_ref(), _ref(v)]), "filters[1].name", False),
        ("StartJob.labels_path", "trainer", "StartJob",  # a path: inside the data root it may be NOT_FOUND
         lambda v: trainer_pb2.StartJobRequest(filter=_ref(), labels_path=v), "dataset.data_path", False),
        ("StartJob.dataset_version", "trainer", "StartJob",
         lambda v: trainer_pb2.StartJobRequest(filter=_ref(), dataset=trainer_pb2.DatasetRef(dataset_version=v)),
         "dataset.dataset_version", False),
        ("GetJob", "trainer", "GetJob", lambda v: trainer_pb2.GetJobRequest(job_id=v), "job_id", False),
        ("WatchJob", "trainer", "WatchJob", lambda v: trainer_pb2.GetJobRequest(job_id=v), "job_id", False),
        ("ListJobs", "trainer", "ListJobs", lambda v: trainer_pb2.ListJobsRequest(filter=_ref(v)), "filter.name",
         False),
        ("ListModels", "trainer", "ListModels", lambda v: trainer_pb2.ListModelsRequest(filter=_ref(v)),
         "filter.name", False),
        ("Promote.filter", "trainer", "Promote",
         lambda v: trainer_pb2.PromoteRequest(filter=_ref(v), version=VICTIM_VERSION), "filter.name", False),
        ("Promote.version", "trainer", "Promote", lambda v: trainer_pb2.PromoteRequest(filter=_ref(), version=v),
         "version", False),
    ] + _added_trainer_methods()


def _added_trainer_methods():
    """RPCs added to TrainerService later (CancelJob, Rollback ...): their job_id / filter fields are hostile too."""
    known = {"StartJob", "GetJob", "WatchJob", "ListJobs", "ListModels", "Promote"}
    out = []
    for method in trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].methods:
        if method.name in known or method.client_streaming:
            continue
        fields = method.input_type.fields_by_name
        cls = method.input_type._concrete_class
        if "job_id" in fields:
            out.append((f"{method.name}.job_id", "trainer", method.name,
                        lambda v, cls=cls: cls(job_id=v), "job_id", method.server_streaming))
        if "filter" in fields and fields["filter"].message_type is common_pb2.FilterRef.DESCRIPTOR:
            out.append((f"{method.name}.filter", "trainer", method.name,
                        lambda v, cls=cls: cls(filter=_ref(v)), "filter.name", method.server_streaming))
    return out


STUBS = {"inference": scoring_pb2_grpc.ScoringServiceStub, "prefilter": prefilter_pb2_grpc.PrefilterServiceStub,
         "oracle_gateway": oracle_pb2_grpc.OracleServiceStub, "trainer": trainer_pb2_grpc.TrainerServiceStub}


def _outcome(stub, method: str, request, item_stream: bool) -> tuple[str, str]:
    """(status or item error code, its message) of one hostile call."""
    call = getattr(stub, method)
    try:
        if item_stream:  # bidi streams answer a bad item with an ItemError and go on
            (response,) = list(call(iter([request]), timeout=30))
            return response.error.code or "OK", response.error.message
        result = call(request, timeout=30)
        if hasattr(result, "__iter__") and not hasattr(result, "ListFields"):
            list(result)
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


def test_every_rpc_refuses_hostile_identifiers_naming_the_field(world):
    channels = {name: svc.channel() for name, svc in world["services"].items()}
    problems = []
    try:
        for label, service, method, build, field, item_stream in _targets(world["article"]):
            stub = STUBS[service](channels[service])
            for kind, value in HOSTILE.items():
                if kind == "upper-case" and field == "job_id":
                    continue  # job ids are case-sensitive ASCII: "UPLIFTING" is one
                code, message = _outcome(stub, method, build(value), item_stream)
                allowed = ("INVALID_ARGUMENT", "NOT_FOUND") if label.endswith("labels_path") else ("INVALID_ARGUMENT",)
                if code not in allowed or field not in message:
                    problems.append(f"{label} <- {kind}: {code} {message[:160]!r}")
                if len(message) > 500 or "\x00" in message or "\u0456" in message:
                    problems.append(f"{label} <- {kind}: the message echoes the raw value")
    finally:
        for channel in channels.values():
            channel.close()
    assert not problems, "\n".join(problems)
    assert world["check_untouched"](), "a file outside the services' folders changed"
    assert not (world["root"] / "state" / "trainer" / "registry" / FILTER / "promoted.json").exists()
    for svc in world["services"].values():
        assert svc.process.poll() is None, svc.log_tail()


def _read_all(bootstrap: str, topic: str, want: int, timeout: float = 60.0) -> list:
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "hostile-check",
                                         "enable.auto.commit": False})
    out: list = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                         for p in meta.partitions])
        deadline = time.monotonic() + timeout
        while len(out) < want and time.monotonic() < deadline:
            out.extend(m for m in consumer.consume(100, 0.2) if not m.error())
    finally:
        consumer.close()
    return out


def test_every_topic_dead_letters_hostile_identifiers_naming_the_field(world, kafka_bootstrap):
    p, article = world["prefix"], world["article"]
    label = {"article": article, "filter": _ref(), "reason": oracle_pb2.LABEL_REASON_TRAINING}
    plan: dict[str, list[tuple[bytes, bytes, list, str]]] = {t.ORACLE_REQUESTS: [], t.ARTICLES_CANDIDATES: []}
    for kind, value in HOSTILE.items():
        job_ids = [] if kind == "upper-case" else [  # job ids are case-sensitive ASCII: "UPLIFTING" is one
            (f"job-{kind}".encode(), oracle_pb2.LabelRequest(**label, job_id=value).SerializeToString(), [],
             "job_id")]
        plan[t.ORACLE_REQUESTS] += job_ids + [
            (f"filter-{kind}".encode(), oracle_pb2.LabelRequest(**{**label, "filter": _ref(value)})
             .SerializeToString(), [], "filter.name"),
            (f"oracle-{kind}".encode(), oracle_pb2.LabelRequest(**label, oracle=value).SerializeToString(), [],
             "oracle")]
        plan[t.ARTICLES_CANDIDATES] += [
            (f"passed-{kind}".encode(), events_pb2.CandidateArticle(article=article, passed_filters=[_ref(value)])
             .SerializeToString(), [], "passed_filters[0].name"),
            (f"header-{kind}".encode(), events_pb2.CandidateArticle(article=article).SerializeToString(),
             [(h.PASSED_FILTERS, value.encode())], h.PASSED_FILTERS)]
    producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap})
    for topic, messages in plan.items():
        for key, value, headers, _ in messages:
            producer.produce(p + topic, key=key, value=value, headers=headers)
    # a promotion event naming another registry: inference must ignore it (and keep serving its own model)
    producer.produce(p + t.MODELS_EVENTS, key=b"evil", value=events_pb2.ModelPromoted(
        filter=_ref(HOSTILE["traversal"]), version=VICTIM_VERSION).SerializeToString())
    producer.flush(30)

    for topic, messages in plan.items():
        dead = _read_all(kafka_bootstrap, p + t.dlq(topic), len(messages))
        errors = {m.key(): dict(m.headers())[h.ERROR].decode() for m in dead}
        missing = [key for key, *_ in messages if key not in errors]
        assert not missing, (topic, missing, world["services"]["oracle_gateway"].log_tail())
        for key, _, _, field in messages:
            assert field in errors[key] and "valid" in errors[key], (topic, key, errors[key])
            assert str(world["root"]) not in errors[key] and "\x00" not in errors[key]
    assert not _read_all(kafka_bootstrap, p + t.ORACLE_LABELS, 1, timeout=2)
    with world["services"]["inference"].channel() as channel:
        response = scoring_pb2_grpc.ScoringServiceStub(channel).Score(
            scoring_pb2.ScoreRequest(article=article, filters=[_ref()]), timeout=30)
    assert response.results[0].model_version == world["model"]
    assert world["check_untouched"](), "a file outside the services' folders changed"
    for svc in world["services"].values():
        assert svc.process.poll() is None, svc.log_tail()
