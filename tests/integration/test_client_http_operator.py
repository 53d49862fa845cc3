"""What users of a running system touch, against real service processes on loopback sockets: the client
library (sync + asyncio), the examples/ scripts, the operator CLI (models, jobs, predict, budgets) and the
HTTP/JSON API of the inference service (a real HTTP client, and schemathesis against /openapi.json)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from distillery.client import ClientError, ItemFailure, OracleClient, ScoringClient, TrainerClient
from distillery.client.aio import AsyncScoringClient
from distillery.filters import FilterCatalog
from distillery.runtime.supervisor import start_service

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FILTERS = ROOT / "filters"
TOKEN = "client-test-token-3f9a"
runner = CliRunner()

GOOD = {"title": "Community garden feeds 300 families",
        "text": "Volunteers turned an empty lot into a garden that now supplies fresh vegetables to 300 families "
                "every week, with a waiting list for plots and a new school programme."}


def _register_lexical(spec, registry, seed: int):
    from distillery.calibration import Calibration
    from distillery.students import compose_text, make_student
    from distillery.synthetic import generate, scores_of

    records = list(generate(spec, 160, seed=seed))
    texts = [compose_text(r["title"], r.get("text") or r.get("content", "")) for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
    student = make_student("lexical", spec.dimension_names, filter=spec.name)
    student.fit(texts[:120], y[:120])
    cal = Calibration.fit(student.predict(texts[120:]), y[120:], spec.dimension_names)
    return registry.register(spec, student, cal)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A state folder whose registry holds two uplifting versions, the second promoted after the first."""
    from distillery.registry import ModelRegistry

    root = tmp_path_factory.mktemp("users")
    spec = FilterCatalog.load(FILTERS, ["uplifting"]).get("uplifting")
    registry = ModelRegistry(root / "registry")
    first = _register_lexical(spec, registry, seed=1)
    registry.promote("uplifting", first.version_id)
    second = _register_lexical(spec, registry, seed=2)
    registry.promote("uplifting", second.version_id)
    return root, first.version_id, second.version_id


@pytest.fixture(scope="module")
def inference(world):
    root, _, _ = world
    svc = start_service("inference", args=[
        "--filters-dir", str(FILTERS), "--filter", "uplifting", "--state-dir", str(root),
        "--max-wait-ms", "5", "--reload-poll-seconds", "0.2", "--log-level", "WARNING",
    ], env={"DISTILLERY_INFERENCE_AUTH_TOKEN": TOKEN}, log_dir=root / "logs-inference")
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def trainer(world):
    root, _, _ = world
    svc = start_service("trainer", args=["--filters-dir", str(FILTERS), "--filter", "uplifting", "--state-dir",
                                         str(root), "--log-level", "WARNING"], log_dir=root / "logs-trainer")
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def gateway(world):
    root, _, _ = world
    svc = start_service("oracle_gateway", args=["--filters-dir", str(FILTERS), "--filter", "uplifting",
                                                "--state-dir", str(root), "--log-level", "WARNING"],
                        log_dir=root / "logs-gateway")
    yield svc
    svc.stop()


def cli(*args: str, env: dict | None = None, stdin: str | None = None):
    from distillery.cli.main import app

    result = runner.invoke(app, list(args), env=env or {}, input=stdin)
    assert "Traceback" not in result.output
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    return result


# -- client library -----------------------------------------------------------------------------------------
def test_sync_client_typed_scores_with_token(inference):
    with ScoringClient(inference.address, token=TOKEN, timeout=30) as client:
        [score] = client.score(GOOD, filters=["uplifting"])
        assert score.filter == "uplifting/v1" and score.article_id
        assert set(score.dimensions) == set(FilterCatalog.load(FILTERS).get("uplifting").dimension_names)
        assert 0 <= score.overall <= 10 and score.tier and score.stage == "single"
        d = next(iter(score.dimensions.values()))
        assert d.lower <= d.score <= d.upper
        batch = client.score_batch([GOOD, {**GOOD, "id": "second"}], filters="uplifting")
        assert [b[0].article_id for b in batch][1] == "second"
        items = list(client.score_stream([GOOD, {"title": "", "text": "no title"}, GOOD], filters=["uplifting"]))
        assert isinstance(items[1], ItemFailure) and items[1].code == "INVALID_ARGUMENT"
        assert items[0][0].overall == pytest.approx(items[2][0].overall)


def test_sync_client_errors_are_typed(inference):
    with ScoringClient(inference.address, timeout=10) as client:
        with pytest.raises(ClientError) as denied:
            client.score(GOOD)
        assert denied.value.code == "UNAUTHENTICATED"
    with ScoringClient(inference.address, token=TOKEN, timeout=10) as client:
        with pytest.raises(ClientError) as unknown:
            client.score(GOOD, filters=["no_such_filter"])
        assert unknown.value.code == "NOT_FOUND" and "no_such_filter" in unknown.value.message
        with pytest.raises(ValueError, match="unknown article field"):
            client.score({**GOOD, "body": "x"})


def test_asyncio_client(inference):
    async def run():
        async with AsyncScoringClient(inference.address, token=TOKEN, timeout=30) as client:
            results = await asyncio.gather(*(client.score({**GOOD, "id": f"a{i}"}, ["uplifting"]) for i in range(6)))
            streamed = [item async for item in client.score_stream([GOOD, GOOD], ["uplifting"])]
            return results, streamed

    results, streamed = asyncio.run(run())
    assert [r[0].article_id for r in results] == [f"a{i}" for i in range(6)]
    assert len(streamed) == 2 and streamed[0][0].filter == "uplifting/v1"


# -- examples/ ----------------------------------------------------------------------------------------------
def _example(name: str, *args: str, target: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DISTILLERY_TARGET": target, "DISTILLERY_TOKEN": TOKEN}
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True,
                          env=env, input=stdin, timeout=120, check=False)


def test_examples_run_against_the_service(inference, tmp_path):
    sync = _example("score_sync.py", "--filter", "uplifting", target=inference.address)
    assert sync.returncode == 0, sync.stderr
    assert sync.stdout.count("uplifting/v1: overall") == 2
    aio = _example("score_asyncio.py", "--count", "5", target=inference.address)
    assert aio.returncode == 0, aio.stderr
    assert len(aio.stdout.splitlines()) == 5
    lines = [json.dumps({**GOOD, "id": "s1"}), json.dumps({"title": "t", "text": " "}), json.dumps({**GOOD, "id": "s3"})]
    stream = _example("score_stream.py", "--filter", "uplifting", target=inference.address, stdin="\n".join(lines))
    assert stream.returncode == 2, stream.stderr  # one bad article: reported, the others scored
    out = [json.loads(line) for line in stream.stdout.splitlines()]
    assert out[0]["id"] == "s1" and "error" in out[1] and out[2]["id"] == "s3"


@pytest.mark.skipif(shutil.which("grpcurl") is None, reason="grpcurl is not installed (not on PyPI or Debian here)")
def test_grpcurl_example(inference):
    env = {**os.environ, "TARGET": inference.address, "TOKEN": TOKEN}
    out = subprocess.run([str(ROOT / "examples" / "grpcurl.sh")], capture_output=True, text=True, env=env, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert "distillery.v1.ScoringService" in out.stdout and '"overall"' in out.stdout


# -- operator CLI -------------------------------------------------------------------------------------------
def test_models_list_describe_promote_rollback(world, trainer):
    _, first, second = world
    target = ["--target", trainer.address]
    listed = cli("models", "list", "--filter", "uplifting", "--json", *target)
    assert listed.exit_code == 0, listed.output
    rows = {m["version"]: m for m in json.loads(listed.output)}
    assert rows[second]["promoted"] and not rows[first]["promoted"]
    described = cli("models", "describe", "uplifting", *target)
    assert described.exit_code == 0 and second in described.output and "promoted" in described.output
    back = cli("models", "rollback", "uplifting", *target)
    assert back.exit_code == 0 and first in back.output
    assert TrainerClient(trainer.address).get_model("uplifting").version == first
    again = cli("models", "rollback", "uplifting", *target)
    assert again.exit_code == 2 and "FAILED_PRECONDITION" in again.output  # nothing earlier to go back to
    promoted = cli("models", "promote", "uplifting", second, *target)
    assert promoted.exit_code == 0 and second in promoted.output
    missing = cli("models", "describe", "uplifting", "20000101T000000-000000", *target)
    assert missing.exit_code == 2 and "NOT_FOUND" in missing.output


def test_operator_cli_reports_an_unreachable_service():
    out = cli("models", "list", "--target", "127.0.0.1:9", "--timeout", "3")
    assert out.exit_code == 3 and "UNAVAILABLE" in out.output


def test_predict_from_file_and_stdin(inference, tmp_path):
    data = tmp_path / "articles.jsonl"
    data.write_text("\n".join(json.dumps({**GOOD, "id": f"p{i}"}) for i in range(3)) + "\n")
    env = {"DISTILLERY_INFERENCE_TARGET": inference.address, "DISTILLERY_TOKEN": TOKEN}
    out = cli("predict", str(data), "--filter", "uplifting", env=env)
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [x["id"] for x in lines] == ["p0", "p1", "p2"] and lines[0]["results"][0]["filter"] == "uplifting/v1"
    piped = cli("predict", "-", env=env, stdin=json.dumps(GOOD) + "\nnot json\n")
    assert piped.exit_code == 2 and "line 2" in piped.output
    assert json.loads(piped.stdout.splitlines()[0])["results"][0]["tier"]
    no_token = cli("predict", str(data), env={"DISTILLERY_INFERENCE_TARGET": inference.address})
    assert no_token.exit_code == 4 and "UNAUTHENTICATED" in no_token.output


def test_budgets_show_and_set(gateway):
    target = ["--target", gateway.address]
    assert cli("budgets", "set", "filter", "uplifting", "2.5", *target).exit_code == 0
    shown = cli("budgets", "show", "--json", *target)
    rows = json.loads(shown.output)
    row = next(r for r in rows if r["scope"] == "filter" and r["name"] == "uplifting")
    assert row["limit_usd"] == 2.5 and row["remaining_usd"] <= 2.5
    assert OracleClient(gateway.address).budgets("uplifting")[0].limit_usd == 2.5
    bad = cli("budgets", "set", "filter", "no_such_filter", "1", *target)
    assert bad.exit_code == 2 and "NOT_FOUND" in bad.output
    cleared = cli("budgets", "set", "filter", "uplifting", "0", *target)
    assert cleared.exit_code == 0 and "no cap" in cleared.output


def test_jobs_list_show_cancel(gateway, trainer):
    # Labels in the shared label store (through the real gateway and its synthetic oracle), then two jobs:
    # with one job slot the second waits, and both are cancelled.
    from distillery.synthetic import generate

    spec = FilterCatalog.load(FILTERS, ["uplifting"]).get("uplifting")
    with OracleClient(gateway.address, timeout=30) as oracle:
        for record in generate(spec, 40, seed=5):
            oracle.label({"title": record["title"], "text": record.get("text") or record["content"]}, "uplifting")
    with TrainerClient(trainer.address, timeout=30) as client:
        jobs = [client.start_job("uplifting", kind="lexical") for _ in range(2)]
    target = ["--target", trainer.address]
    for job in jobs:
        out = cli("jobs", "cancel", job.job_id, *target)
        assert out.exit_code == 0, out.output
    shown = cli("jobs", "show", jobs[1].job_id, "--json", *target)
    assert json.loads(shown.output)["state"] == "CANCELLED"
    listed = cli("jobs", "list", "--json", *target)
    assert {j["job_id"] for j in json.loads(listed.output)} >= {j.job_id for j in jobs}
    assert cli("jobs", "show", "no-such-job", *target).exit_code == 2


# -- HTTP/JSON ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def http(inference):
    assert inference.http_port
    with httpx.Client(base_url=f"http://127.0.0.1:{inference.http_port}", timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def test_http_score_batch_and_models(http, inference):
    one = http.post("/v1/score", json={"article": GOOD, "filters": ["uplifting"]})
    assert one.status_code == 200, one.text
    result = one.json()["results"][0]
    assert result["filter"] == "uplifting" and 0 <= result["overall"] <= 10
    # The same engine as gRPC: the same article gets the same score.
    with ScoringClient(inference.address, token=TOKEN) as client:
        assert client.score(GOOD, ["uplifting"])[0].overall == pytest.approx(result["overall"])
    batch = http.post("/v1/score:batch", json={"articles": [GOOD, {**GOOD, "id": "b2"}]})
    assert [r["article_id"] for r in batch.json()["responses"]][1] == "b2"
    models = http.get("/v1/models").json()["models"]
    assert models[0]["filter"] == "uplifting" and models[0]["versions"]["primary"]


@pytest.mark.parametrize("body, status, code", [
    ({"article": {"title": "t"}}, 400, "INVALID_ARGUMENT"),
    ({"article": GOOD, "filters": ["nope"]}, 404, "NOT_FOUND"),
    ({"articles": []}, 400, "INVALID_ARGUMENT"),
    ("not an object", 400, "INVALID_ARGUMENT"),
])
def test_http_errors_are_json_with_grpc_codes(http, body, status, code):
    path = "/v1/score:batch" if isinstance(body, dict) and "articles" in body else "/v1/score"
    response = http.post(path, json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]


def test_http_auth_matches_grpc(inference):
    url = f"http://127.0.0.1:{inference.http_port}/v1/score"
    assert httpx.post(url, json={"article": GOOD}).json()["error"]["code"] == "UNAUTHENTICATED"
    wrong = httpx.post(url, json={"article": GOOD}, headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    assert httpx.get(f"http://127.0.0.1:{inference.http_port}/openapi.json").status_code == 200  # the doc is open


def test_http_api_conforms_to_its_openapi_document(inference, tmp_path):
    """schemathesis generates requests from /openapi.json (valid and invalid, bounded) and checks every answer:
    no 5xx, status codes, content types and bodies as documented."""
    cli_path = Path(sys.executable).parent / "schemathesis"
    out = subprocess.run(
        [str(cli_path), "run", f"http://127.0.0.1:{inference.http_port}/openapi.json", "--checks", "all",
         "--max-examples", "12", "--seed", "7", "--generation-deterministic", "--no-shrink", "--workers", "1",
         "--phases", "examples,coverage,fuzzing", "-H", f"Authorization: Bearer {TOKEN}",
         "--request-timeout", "30", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"})
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "3 passed" in out.stdout or "passed" in out.stdout
