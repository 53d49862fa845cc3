"""``distillery cascade tune``: pick a filter's cascade threshold on validation data, report the speed-up."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err = Console(stderr=True)

cascade_app = typer.Typer(help="Tune the cheap-first model cascade of a filter.", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(2)


def _targets(record: dict, dims: list[str]) -> list[float] | None:
    """Oracle scores of a record: ``scores``/``dimension_scores`` (dict or its repr) or synthetic metadata."""
    from distillery.synthetic import scores_of

    raw = record.get("scores") or record.get("dimension_scores") or scores_of(record)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raw = ast.literal_eval(raw)
    if not isinstance(raw, dict):
        return None
    try:
        return [float(raw[d]["score"] if isinstance(raw[d], dict) else raw[d]) for d in dims]
    except (KeyError, TypeError, ValueError):
        return None


@cascade_app.command("tune")
def tune_cmd(
    filter_ref: Annotated[str, typer.Option("--filter", help="filter: name or name/vN")],
    data: Annotated[Path, typer.Option("--data", help="validation JSONL with oracle scores per record "
                                       "(scores / dimension_scores / synthetic metadata); 'synthetic' generates "
                                       "the filter's synthetic corpus")] = Path("synthetic"),
    count: Annotated[int, typer.Option("--count", help="use at most this many records")] = 1000,
    target_fnr: Annotated[float, typer.Option("--target-fnr", help="largest share of medium-or-above articles "
                                              "the cheap stage may keep from the expensive one")] = 0.02,
    registry_dir: Annotated[Path | None, typer.Option("--registry", help="model registry (default "
                                                      "<state dir>/registry)")] = None,
    cheap_version: Annotated[str, typer.Option("--cheap", help="cheap model version (default: newest lexical)")] = "",
    expensive_version: Annotated[str, typer.Option("--expensive", help="expensive model version (default: "
                                                   "the promoted one)")] = "",
    backend: Annotated[str, typer.Option("--backend", help="encoder runtime for probes: torch or onnx")] = "torch",
    filters_dir: Annotated[Path | None, typer.Option("--filters-dir", help="folder of filter packages")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the report as JSON here")] = None,
) -> None:
    """Pick the highest cascade threshold that keeps the false-negative rate on medium-and-above articles at
    or below the target, then time the cascade against the expensive student alone."""
    import numpy as np
    from distillery_services.inference.cascade import tune
    from distillery_services.inference.models import CHEAP, PRIMARY, ModelRef
    from distillery_services.inference.registry_source import RegistrySource

    from distillery.config import DEFAULT_STATE_DIR
    from distillery.filters.search import discover

    catalog = discover([filters_dir])
    spec = catalog.resolve(filter_ref)
    root = registry_dir or DEFAULT_STATE_DIR / "registry"
    source = RegistrySource(root, backend=backend)
    cheap, expensive = _pick_models(source.registry, spec, root, cheap_version, expensive_version)
    texts, targets = _validation_set(spec, data, count)
    cheap_model = source.load(spec, ModelRef(spec.name, CHEAP, cheap.version_id, cheap.kind, {"info": cheap}))
    exp_model = source.load(spec, ModelRef(spec.name, PRIMARY, expensive.version_id, expensive.kind,
                                           {"info": expensive}))
    report = tune(spec, cheap_model, exp_model, texts, np.asarray(targets), target_fnr)
    _print_report(spec, report)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_dict(), indent=2))


def _pick_models(registry, spec, root: Path, cheap_version: str, expensive_version: str):
    """(cheap, expensive) registry entries: the given versions, else the newest lexical model of this filter
    version and the promoted one; missing or identical models exit 2."""
    from distillery.registry import RegistryError

    try:
        expensive = (registry.get(spec.name, expensive_version) if expensive_version
                     else registry.promoted(spec.name))
        if expensive is None:
            raise _fail(f"no model is promoted for {spec.ref} in {root}; pass --expensive VERSION")
        if cheap_version:
            cheap = registry.get(spec.name, cheap_version)
        else:
            lexical = [i for i in registry.list(spec.name) if i.kind == "lexical" and i.filter_version == spec.version]
            if not lexical:
                raise _fail(f"no lexical model registered for {spec.ref}; train one or pass --cheap VERSION")
            cheap = lexical[0]
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    if cheap.version_id == expensive.version_id:
        raise _fail("the cheap and the expensive model are the same version; a cascade needs two models")
    return cheap, expensive


def _validation_set(spec, data: Path, count: int) -> tuple[list[str], list[list[float]]]:
    """Texts and oracle targets of at most ``count`` records (synthetic or a JSONL file); fewer than 20
    usable records exit 2."""
    from distillery.articles import read_jsonl
    from distillery.students import compose_text

    if str(data) == "synthetic":
        from distillery.synthetic import generate

        records = list(generate(spec, count, seed=11))
    else:
        if not data.is_file():
            raise _fail(f"validation data {data} does not exist")
        records = []
        for r in read_jsonl(data):
            records.append(r)
            if len(records) >= count:
                break
    texts, targets = [], []
    for r in records:
        y = _targets(r, spec.dimension_names)
        body = r.get("text") or r.get("content") or ""
        if y is None or not body:
            continue
        texts.append(compose_text(r.get("title", ""), body))
        targets.append(y)
    if len(texts) < 20:
        raise _fail(f"only {len(texts)} records in {data} carry oracle scores for every dimension of {spec.ref}; "
                    "need at least 20")
    return texts, targets


def _print_report(spec, report) -> None:
    table = Table(title=f"cascade for {spec.ref} on {report.articles} articles ({report.positives} medium+)")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for label, value in [
        ("threshold (cheap overall >= escalates)", f"{report.threshold:.2f}"),
        ("false negatives on medium+ (target)", f"{report.fnr:.1%} ({report.target_fnr:.1%})"),
        ("escalated to the expensive model", f"{report.escalated_share:.1%}"),
        ("expensive alone, measured", f"{report.expensive_seconds:.2f} s"),
        ("cascade, measured", f"{report.cascade_seconds:.2f} s"),
        ("speed-up", f"{report.speedup:.2f}x"),
        ("overall MAE vs oracle: cascade / expensive", f"{report.cascade_mae:.2f} / {report.expensive_mae:.2f}"),
        ("models (cheap / expensive)", f"{report.cheap_version} / {report.expensive_version}"),
    ]:
        table.add_row(label, value)
    console.print(table)
    console.print(f"set [bold]student.cascade_threshold: {report.threshold:.2f}[/] in the filter spec "
                  f"({spec.ref}) to serve this cascade")


def register(app: typer.Typer) -> None:
    app.add_typer(cascade_app, name="cascade")
