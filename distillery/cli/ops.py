"""Operator commands against running services (over gRPC, with the client library):

``distillery models list|describe|promote|rollback`` and ``distillery jobs list|show|cancel`` (trainer),
``distillery predict`` (inference), ``distillery budgets show|set`` (oracle gateway).

Every command takes ``--target``, ``--tls-ca``/``--tls-cert``/``--tls-key`` and ``--token``; defaults come
from ``DISTILLERY_<SERVICE>_TARGET`` (e.g. ``DISTILLERY_TRAINER_TARGET``), then ``DISTILLERY_TARGET``, and
``DISTILLERY_TOKEN``/``DISTILLERY_TLS_CA``/``DISTILLERY_TLS_CERT``/``DISTILLERY_TLS_KEY``. ``--json`` prints
machine-readable output.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err = Console(stderr=True)

DEFAULT_TARGETS = {"trainer": "127.0.0.1:50053", "inference": "127.0.0.1:50054", "oracle_gateway": "127.0.0.1:50052"}

models_app = typer.Typer(help="Model versions in the trainer's registry: list, describe, promote, roll back.",
                         no_args_is_help=True)
jobs_app = typer.Typer(help="Training jobs of a running trainer: list, show, cancel.", no_args_is_help=True)
budgets_app = typer.Typer(help="Oracle spending caps of a running gateway: show, set.", no_args_is_help=True)


def _target_option(service: str):
    env = service.upper()
    return typer.Option("--target", envvar=[f"DISTILLERY_{env}_TARGET", "DISTILLERY_TARGET"],
                        help=f"host:port of the {service} service, or dns:///name:port for round-robin over a "
                        f"headless Service [default: {DEFAULT_TARGETS[service]}]")


TlsCa = Annotated[Path | None, typer.Option("--tls-ca", envvar="DISTILLERY_TLS_CA", help="PEM CA bundle: use TLS")]
TlsCert = Annotated[Path | None, typer.Option("--tls-cert", envvar="DISTILLERY_TLS_CERT",
                                              help="PEM client certificate (mutual TLS, with --tls-key)")]
TlsKey = Annotated[Path | None, typer.Option("--tls-key", envvar="DISTILLERY_TLS_KEY", help="PEM client key")]
Token = Annotated[str | None, typer.Option("--token", envvar="DISTILLERY_TOKEN", show_default=False,
                                           help="bearer token (prefer the environment variable)")]
Timeout = Annotated[float, typer.Option("--timeout", help="deadline of each call in seconds")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


# Exit codes: 2 bad input (INVALID_ARGUMENT, NOT_FOUND ...), 3 unavailable/overloaded, 4 denied.
_EXIT = {"UNAVAILABLE": 3, "RESOURCE_EXHAUSTED": 3, "DEADLINE_EXCEEDED": 3, "UNAUTHENTICATED": 4,
         "PERMISSION_DENIED": 4}


def _client(cls_name: str, service: str, target, tls_ca, tls_cert, tls_key, token, timeout):
    """A client of the library (imported here: `distillery --help` stays free of grpc)."""
    import distillery.client as library
    from distillery.client import ChannelConfig

    cls = getattr(library, cls_name)

    for path in (tls_ca, tls_cert, tls_key):
        if path is not None and not Path(path).is_file():
            raise _fail(f"TLS file {path} does not exist")
    try:
        config = ChannelConfig(target=target or DEFAULT_TARGETS[service], token=token or None, tls_ca=tls_ca,
                               tls_cert=tls_cert, tls_key=tls_key, timeout=timeout)
        return cls(config=config)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _run(call):
    """Run one client call; a failed call becomes one line and an exit code, never a traceback."""
    from distillery.client import ClientError

    try:
        return call()
    except ClientError as exc:
        raise _exit_for(exc) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _exit_for(exc) -> typer.Exit:
    hint = ""
    if exc.code == "UNAVAILABLE":
        hint = " (is the service running at --target, and TLS set as it expects?)"
    elif exc.code == "UNAUTHENTICATED":
        hint = " (pass --token or set DISTILLERY_TOKEN)"
    return _fail(f"{exc.code}: {exc.message}{hint}", _EXIT.get(exc.code, 2))


def _print_json(value) -> None:
    def plain(v):
        return dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v

    typer.echo(json.dumps([plain(v) for v in value] if isinstance(value, list) else plain(value), indent=2))


def _model_table(models, title: str) -> Table:
    table = Table(title=title)
    for col in ("filter", "version", "kind", "created", "test MAE", "promoted"):
        table.add_column(col, no_wrap=True)
    for m in models:
        mae = m.metrics.get("test_mae", m.metrics.get("mae"))
        table.add_row(m.filter, m.version, m.kind, m.created_at, f"{mae:.3f}" if mae is not None else "-",
                      "[bold green]yes[/]" if m.promoted else "")
    return table


@models_app.command("list", help="List registered versions (newest first), optionally of one filter.")
def models_list(
    filter_ref: Annotated[str | None, typer.Option("--filter", help="name or name/vN")] = None,
    target: Annotated[str | None, _target_option("trainer")] = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None, token: Token = None,
    timeout: Timeout = 30.0, as_json: AsJson = False,
) -> None:
    with _client("TrainerClient", "trainer", target, tls_ca, tls_cert, tls_key, token, timeout) as client:
        models = _run(lambda: client.list_models(filter_ref))
    if as_json:
        _print_json(models)
    elif not models:
        console.print("no model versions registered" + (f" for {filter_ref}" if filter_ref else ""))
    else:
        console.print(_model_table(models, f"Model versions at {client.config.target}"))


@models_app.command("describe", help="One version with all its metrics ('promoted': the one served now).")
def models_describe(
    filter_ref: Annotated[str, typer.Argument(metavar="FILTER", help="name or name/vN")],
    version: Annotated[str, typer.Argument(help="version id, or 'promoted'")] = "promoted",
    target: Annotated[str | None, _target_option("trainer")] = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None, token: Token = None,
    timeout: Timeout = 30.0, as_json: AsJson = False,
) -> None:
    with _client("TrainerClient", "trainer", target, tls_ca, tls_cert, tls_key, token, timeout) as client:
        m = _run(lambda: client.get_model(filter_ref, version))
    if as_json:
        _print_json(m)
        return
    console.print(f"[bold]{m.filter}[/] [cyan]{m.version}[/] ({m.kind}){' [bold green]promoted[/]' if m.promoted else ''}")
    console.print(f"  created {m.created_at}; dataset {m.dataset_hash}; {escape(m.uri)}")
    if m.multi_model_id:
        console.print(f"  multi model {m.multi_model_id}")
    table = Table(show_edge=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in sorted(m.metrics.items()):
        table.add_row(key, f"{value:.4g}")
    console.print(table)


@models_app.command("promote", help="Serve this version for its filter (the running inference services "
                    "reload it).")
def models_promote(
    filter_ref: Annotated[str, typer.Argument(metavar="FILTER", help="name or name/vN")],
    version: Annotated[str, typer.Argument(help="version id (see `distillery models list`)")],
    target: Annotated[str | None, _target_option("trainer")] = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None, token: Token = None,
    timeout: Timeout = 30.0, as_json: AsJson = False,
) -> None:
    with _client("TrainerClient", "trainer", target, tls_ca, tls_cert, tls_key, token, timeout) as client:
        m = _run(lambda: client.promote(filter_ref, version))
    _print_json(m) if as_json else console.print(f"[bold green]promoted[/] {m.filter} [cyan]{m.version}[/]")


@models_app.command("rollback", help="Serve the version promoted before the current one again.")
def models_rollback(
    filter_ref: Annotated[str, typer.Argument(metavar="FILTER", help="filter name")],
    target: Annotated[str | None, _target_option("trainer")] = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None, token: Token = None,
    timeout: Timeout = 30.0, as_json: AsJson = False,
) -> None:
    with _client("TrainerClient", "trainer", target, tls_ca, tls_cert, tls_key, token, timeout) as client:
        m = _run(lambda: client.rollback(filter_ref))
    _print_json(m) if as_json else console.print(f"[bold green]rolled back[/] {m.filter} to [cyan]{m.version}[/]")


@jobs_app.command("list", help="Training jobs, newest first (also those the retrain loop started).")
def jobs_list(
    filter_ref: Annotated[str | None, typer.Option("--filter", help="name or name/vN")] = None,
    limit: Annotated[int, typer.Option(help="at most this many (0: all)")] = 20,
    target: Annotated[str | None, _target_option("trainer")] = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None, token: Token = None,
    timeout: Timeout = 30.0, as_json: AsJson = False,
) -> None:
    with _client("TrainerClient", "trainer", target, tls_ca, tls_cert, tls_key, token, timeout) as client:
        jobs = _run(lambda: client.list_jobs(filter_ref, limit))
    if as_json:
        _print_json(jobs)
        return
    if not jobs:
        console.print("no jobs")
        return
    table = Table(title=f"Jobs at {client.config.target}")
    for col in ("job", "filters", "kind", "state", "progress", "model", "created"):
        table.add_column(col, no_wrap=True)
    for j in jobs:
        table.add_row(j.job_id, ", ".join(j.filters), j.kind, j.state, f"{j.progress:.0%}", j.model_version,
                      j.created_at)
    console.print(table)


@jobs_app.command("show", help="One job: state, progress, message, metrics, error.")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="job id")],
    target: Annotated[str | None, _target_option("trainer")] = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None, token: Token = None,
    timeout: Timeout = 30.0, as_json: AsJson = False,
) -> None:
    with _client("TrainerClient", "trainer", target, tls_ca, tls_cert, tls_key, token, timeout) as client:
        j = _run(lambda: client.get_job(job_id))
    if as_json:
        _print_json(j)
        return
    console.print(f"[bold]{j.job_id}[/] {', '.join(j.filters)} ({j.kind or 'spec default'}): [bold]{j.state}[/] "
                  f"{j.progress:.0%}")
    console.print(f"  {escape(j.message)}", soft_wrap=True)
    if j.model_version:
        console.print(f"  model {j.model_version}")
    if j.error:
        console.print(f"  [red]error:[/] {escape(j.error)}", soft_wrap=True)
    for key, value in sorted(j.metrics.items()):
        console.print(f"  {key} {value:.4g}")


@jobs_app.command("cancel", help="Cancel a pending or running job (a finished one is left as it is).")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="job id")],
    target: Annotated[str | None, _target_option("trainer")] = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None, token: Token = None,
    timeout: Timeout = 30.0, as_json: AsJson = False,
) -> None:
    with _client("TrainerClient", "trainer", target, tls_ca, tls_cert, tls_key, token, timeout) as client:
        j = _run(lambda: client.cancel_job(job_id))
    if as_json:
        _print_json(j)
    elif j.state == "CANCELLED":
        console.print(f"[bold]cancelled[/] {j.job_id}")
    else:
        console.print(f"{j.job_id} had already finished: {j.state}")


@budgets_app.command("show", help="Spending caps (per filter, per job, default per job) and their spend.")
def budgets_show(
    filter_name: Annotated[str, typer.Option("--filter", help="only this filter")] = "",
    target: Annotated[str | None, _target_option("oracle_gateway")] = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None, token: Token = None,
    timeout: Timeout = 30.0, as_json: AsJson = False,
) -> None:
    with _client("OracleClient", "oracle_gateway", target, tls_ca, tls_cert, tls_key, token, timeout) as client:
        budgets = _run(lambda: client.budgets(filter_name))
    if as_json:
        _print_json(budgets)
        return
    table = Table(title=f"Budgets at {client.config.target}")
    for col in ("scope", "name", "limit USD", "spent USD", "remaining USD"):
        table.add_column(col, no_wrap=True, justify="right" if "USD" in col else "left")
    for b in budgets:
        limit = f"{b.limit_usd:.4f}" if b.limit_usd else "none"
        table.add_row(b.scope, b.name or "-", limit, f"{b.spent_usd:.4f}",
                      f"{b.remaining_usd:.4f}" if b.limit_usd else "-")
    console.print(table)


@budgets_app.command("set", help="Cap a filter's or a job's oracle spend (0 removes the cap) until the "
                     "gateway restarts; make it permanent in the oracle_gateway config.")
def budgets_set(
    scope: Annotated[str, typer.Argument(help="filter or job")],
    name: Annotated[str, typer.Argument(help="filter name or job id")],
    usd: Annotated[float, typer.Argument(help="cap in USD (0: none)", min=0)],
    target: Annotated[str | None, _target_option("oracle_gateway")] = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None, token: Token = None,
    timeout: Timeout = 30.0, as_json: AsJson = False,
) -> None:
    if scope not in ("filter", "job"):
        raise _fail(f"scope must be 'filter' or 'job', not {scope!r}")
    with _client("OracleClient", "oracle_gateway", target, tls_ca, tls_cert, tls_key, token, timeout) as client:
        b = _run(lambda: client.set_budget(scope, name, usd))
    if as_json:
        _print_json(b)
    else:
        console.print(f"budget of {b.scope} {b.name}: " + (f"${b.limit_usd:.4f} (spent ${b.spent_usd:.4f})"
                                                           if b.limit_usd else "no cap"))


def predict(
    source: Annotated[str, typer.Argument(help="JSONL file, or - for stdin")] = "-",
    filter_ref: Annotated[list[str] | None, typer.Option("--filter", help="filter (repeatable; default: "
                                                           "every filter the service loads)")] = None,
    batch: Annotated[int, typer.Option(help="articles per call", min=1, max=1024)] = 64,
    target: Annotated[str | None, _target_option("inference")] = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None, token: Token = None,
    timeout: Timeout = 60.0,
) -> None:
    stream = sys.stdin if source == "-" else None
    if stream is None:
        if not Path(source).is_file():
            raise _fail(f"article file {source} does not exist")
        stream = open(source, encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        with _client("ScoringClient", "inference", target, tls_ca, tls_cert, tls_key, token, timeout) as client:
            bad = _score_lines(client, stream, batch, filter_ref)
    finally:
        if stream is not sys.stdin:
            stream.close()
    if bad:
        raise _fail(f"{bad} line(s) could not be scored (see above)")


def _score_lines(client, stream, batch: int, filters) -> int:
    """Score a JSONL stream ``batch`` articles per call, printing one result line each; the lines that could
    not be scored (not a JSON object, or refused by the service) are reported and counted."""
    bad = 0
    pending: list[tuple[int, dict]] = []
    for line_no, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            record = f"invalid JSON: {exc}"
        if not isinstance(record, dict):
            err.print(f"line {line_no}: skipped, not a JSON object ({record})")
            bad += 1
            continue
        pending.append((line_no, record))
        if len(pending) >= batch:
            bad += _score_and_print(client, pending, filters)
            pending = []
    if pending:
        bad += _score_and_print(client, pending, filters)
    return bad


def register(app: typer.Typer) -> None:
    app.command(help="Score articles against a running inference service: JSONL (one article per line: title, "
                "text, optional id/url/source) from a file or stdin; one JSON result per line on stdout.")(predict)
    app.add_typer(models_app, name="models")
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(budgets_app, name="budgets")


def _score_and_print(client, pending: list[tuple[int, dict]], filters) -> int:
    """Score one batch and print each article's results as a JSON line; a bad article is reported and
    skipped (the batch call validates every article first, so retry the good ones one by one)."""
    from distillery.client import ClientError
    from distillery.client.types import article

    bad = 0
    try:
        articles = [article(record) for _, record in pending]
    except ValueError:
        articles = None
    if articles is not None:
        try:
            results = client.score_batch(articles, filters)
        except ClientError as exc:
            if exc.code != "INVALID_ARGUMENT":
                raise _exit_for(exc) from None
            results = None
        if results is not None:
            for (_, record), scores in zip(pending, results, strict=True):
                _emit(record, scores)
            return 0
    for line_no, record in pending:
        try:
            scores = client.score(article(record), filters)
        except (ClientError, ValueError) as exc:
            err.print(f"line {line_no}: {exc}")
            bad += 1
            continue
        _emit(record, scores)
    return bad


def _emit(record: dict, scores) -> None:
    out = {"id": scores[0].article_id if scores else record.get("id", ""),
           "results": [{"filter": s.filter, "overall": round(s.overall, 4), "tier": s.tier,
                        "uncertain": s.uncertain, "model_version": s.model_version,
                        "scores": {d: round(v.score, 4) for d, v in s.dimensions.items()}} for s in scores]}
    typer.echo(json.dumps(out))
