"""``distillery train`` and ``distillery evaluate``: train a student with progress bars; evaluate a model.

Short forms: ``distillery train --filter belonging/v1`` (labels from the label store, student settings
from the spec) and ``distillery evaluate --filter belonging/v1`` (the promoted model on the frozen test
split of the dataset it was trained on). ``distillery train --student multi --filter a/v1 --filter b/v1
[--data a.jsonl --data b.jsonl]`` trains one multi student for several filters jointly and registers one
version per filter (the same version id for all).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from distillery.parallel import StageFailed

console = Console()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(2)


def _state_dir(state_dir: Path | None) -> Path:
    from distillery.config import DEFAULT_STATE_DIR

    return Path(state_dir or os.environ.get("DISTILLERY_STATE_DIR") or DEFAULT_STATE_DIR)


def _catalog(filters_dir: Path | None):
    """Filters found like every command finds them: ./filters, --filters-dir or $DISTILLERY_FILTERS_DIR, the
    shipped examples."""
    from distillery.filters.search import discover

    return discover([filters_dir])


def _params(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _fail(f"--param expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def train(
    filter_ref: Annotated[list[str], typer.Option("--filter", help="Filter to train for: name or name/vN; repeat "
                                                               "it (with --student multi) for several.")],
    labels: Annotated[list[str] | None, typer.Option("--labels", "--data", help="JSONL of labelled articles; "
                      "default: the label store. Multi: one per --filter, in order, or FILTER=PATH.")] = None,
    kind: Annotated[str, typer.Option("--kind", "--student", help="lexical, probe, stack, ensemble, finetune or multi; "
                                                                  "default: the spec's.")] = "",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Student parameter KEY=VALUE.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and the model.")] = 0,
    promote: Annotated[bool, typer.Option(help="Promote the new version(s) when registered.")] = False,
    state_dir: Annotated[Path | None, typer.Option(help="Local state (registry, datasets, label store).")] = None,
    registry: Annotated[str, typer.Option(help="Registry path or fsspec URI; default <state>/registry.")] = "",
    label_store: Annotated[str, typer.Option(help="Label store URL; default <state>/labels.sqlite.")] = "",
    filters_dir: Annotated[Path | None, typer.Option(help="Folder of filter packages.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the test-split report (md, png, json) here "
                                                     "(multi: one subfolder per filter).")] = None,
    ray_address: Annotated[str, typer.Option("--ray-address", help="Ray cluster to train on (host:port or "
                                             "ray://host:10001); default $RAY_ADDRESS, else a local Ray.")] = "",
    val: Annotated[Path | None, typer.Option("--val", help="JSONL of labelled validation articles (calibration) "
                                            "instead of a split of the labels.")] = None,
    test: Annotated[Path | None, typer.Option("--test", help="JSONL of labelled test articles (evaluation) "
                                             "instead of a split of the labels.")] = None,
    evaluation: Annotated[str, typer.Option("--evaluation", help="auto: cross-validate and train the final "
                                            "model on all labels below 1,000 labels, else hold out 10%/10%; "
                                            "holdout; cv.")] = "auto",
    transfer_from: Annotated[str, typer.Option("--transfer-from", help="Related filters (OLD[,OLD2]) whose promoted "
                                               "students warm-start this one (new filters with few labels); "
                                               "default: the spec's student.transfer_from.")] = "",
) -> None:
    """Train a student on oracle labels, calibrate and evaluate it (cross-validated on all labels for small sets,
    held-out splits for large ones, or your --val/--test files) and register it.

    The job runs on Ray: its independent parts (stack members and folds, ensemble members, encoder batches,
    calibration) are spread over the cluster's nodes; the progress line shows each stage per node."""
    from distillery_services.trainer.datasets import DatasetError
    from distillery_services.trainer.training import run_training

    from distillery.cli.progress import progress

    _check_student_flags(filter_ref, kind, transfer_from)
    if len(filter_ref) > 1 or kind == "multi":
        _train_multi(filter_ref, labels or [], kind, _params(param), seed, promote, state_dir, registry,
                     label_store, filters_dir, report, ray_address=ray_address)
        return
    spec, req = _single_request(filter_ref[0], labels, kind, param, seed, promote, state_dir, registry, label_store,
                                filters_dir, ray_address, val, test, evaluation, transfer_from)
    with progress(err, f"train {spec.ref}") as update:
        try:
            summary = run_training(spec, req, update)
        except (DatasetError, ValueError, StageFailed) as exc:
            raise _fail(str(exc)) from None
    _print_training(spec, summary, report)


def _check_student_flags(filter_ref: list[str], kind: str, transfer_from: str) -> None:
    from distillery.students import KINDS

    if kind and kind not in KINDS:
        raise _fail(f"unknown student kind {kind!r}; choose one of {', '.join(KINDS)}")
    if transfer_from and (len(filter_ref) > 1 or kind == "multi"):
        raise _fail("--transfer-from warm-starts one filter's student; train several filters with --student "
                    "multi instead")


def _single_request(filter_ref: str, labels: list[str] | None, kind: str, param: list[str] | None, seed: int,
                    promote: bool, state_dir: Path | None, registry: str, label_store: str,
                    filters_dir: Path | None, ray_address: str, val: Path | None, test: Path | None,
                    evaluation: str, transfer_from: str):
    """The filter spec and the TrainRequest of a one-filter ``distillery train``; bad flags or files exit 2."""
    from distillery_services.trainer.request import TrainRequest, default_dirs

    from distillery.filters import UnknownFilterError

    if len(labels or []) > 1:
        raise _fail("give one --labels file (several are for --student multi, one per --filter)")
    labels_file = Path(labels[0]) if labels else None
    if labels_file is not None and not labels_file.is_file():
        raise _fail(f"labels file {labels_file} does not exist")
    try:
        spec = _catalog(filters_dir).resolve(filter_ref)
    except UnknownFilterError as exc:
        raise _fail(str(exc)) from None
    for path in (val, test):
        if path is not None and not path.is_file():
            raise _fail(f"labels file {path} does not exist")
    params = _params(param)
    if evaluation != "auto":
        params["evaluation"] = evaluation
    dirs = default_dirs(_state_dir(state_dir))
    req = TrainRequest(kind=kind, labels_path=str(labels_file or ""), label_store_url=label_store or
                       dirs["label_store_url"], seed=seed, params=params, promote=promote,
                       registry_root=registry or dirs["registry_root"], datasets_dir=dirs["datasets_dir"],
                       embed_cache_dir=dirs["embed_cache_dir"], use_ray=True, ray_address=ray_address,
                       val_path=str(val or ""), test_path=str(test or ""),
                       transfer_from=[n.strip() for n in transfer_from.split(",") if n.strip()])
    return spec, req


def _print_training(spec, summary: dict, report: Path | None) -> None:
    """Where it ran, the registered version and its metrics; the report's path, else the metrics as JSON."""
    from distillery_services.trainer.request import summary_json

    _print_ray(summary)
    m = summary["metrics"]
    console.print(f"[bold green]registered[/] {spec.ref} [cyan]{summary.get('model_version', '')}[/]"
                  + (" [bold](promoted)[/]" if summary.get("promoted") else ""))
    what = "cross-validated MAE" if summary.get("evaluation_mode") == "cv" else "test MAE"
    console.print(f"  {what} {m['test_mae']:.3f} (raw {m['test_mae_raw']:.3f}, mean predictor "
                  f"{m['mean_predictor_mae']:.3f}); coverage {m['coverage']:.1%}, width {m['interval_width']:.2f}")
    if "uncertain_share" in m:
        console.print(f"  flagged uncertain: {m['uncertain_share']:.1%}, their MAE {m['uncertain_mae_flagged']:.3f} vs "
                      f"{m['uncertain_mae_unflagged']:.3f} unflagged ({m['uncertain_mae_ratio']:.2f}x)")
    console.print(f"  {escape(summary.get('evaluation_description', ''))}", soft_wrap=True)
    if report:
        from distillery_services.trainer.reports import write_report

        t = summary["test"]
        cv = summary.get("evaluation_mode") == "cv"
        path = write_report(report, spec, summary["evaluation"], t["y"], t["calibrated"], t["lower"], t["upper"],
                            title="Cross-validation (out-of-fold)" if cv else "Test split",
                            context={"model": summary.get("model_version", ""), "dataset": summary["dataset_hash"],
                                     "evaluation": summary.get("evaluation_description", "")})
        console.print(f"  report: {path}")
    else:
        console.print_json(summary_json({"metrics": m}))


def _print_ray(summary: dict) -> None:
    """Where the job's parts ran: per Ray node, the parts of each stage."""
    ray = summary.get("ray")
    if not ray:
        return
    ips = {n["node_id"]: n["ip"] for n in ray["nodes"]}
    console.print(f"  Ray {ray.get('address', '')}: {len(ips)} node(s) ran {len(ray['parts'])} parts"
                  + (f"; lost {len(ray['lost_nodes'])} node(s), their parts retried" if ray.get("lost_nodes") else ""))
    for stage, by_node in ray["stages"].items():
        where = ", ".join(f"{ips.get(node, node[:8])} ({node[:8]}): {n}" for node, n in by_node.items())
        console.print(f"    {stage}: {where}")


def _data_files(specs, entries: list[str], resolve) -> dict[str, str]:
    """Map ``--data`` entries to filter refs: ``FILTER=PATH`` names its filter; plain paths go, in order, to
    the filters not named that way (then there must be one per such filter). Unnamed filters: label store."""
    named: dict[str, str] = {}
    plain: list[str] = []
    refs = [s.ref for s in specs]
    for entry in entries:
        key, sep, path = entry.partition("=")
        if sep and not Path(entry).is_file():
            from distillery.filters import UnknownFilterError

            try:
                ref = resolve(key.strip()).ref
            except UnknownFilterError as exc:
                raise _fail(f"--data {entry}: {exc}") from None
            if ref not in refs:
                raise _fail(f"--data {entry}: {ref} is not one of the filters to train ({', '.join(refs)})")
            named[ref] = path.strip()
        else:
            plain.append(entry)
    if plain:
        rest = [r for r in refs if r not in named]
        if len(plain) != len(rest):
            raise _fail(f"give one --data file per --filter ({len(refs)} filters, {len(plain) + len(named)} files), "
                        "in the order of --filter, or name each as FILTER=PATH")
        named.update(zip(rest, plain))
    for ref, path in named.items():
        if not Path(path).is_file():
            raise _fail(f"labels file {path} (for {ref}) does not exist")
    return named


def _train_multi(filter_refs: list[str], data: list[str], kind: str, params: dict[str, str], seed: int,
                 promote: bool, state_dir: Path | None, registry: str, label_store: str,
                 filters_dir: Path | None, report: Path | None, ray_address: str = "") -> None:
    """``distillery train --student multi --filter A --filter B``: one joint student, one version per filter."""
    from distillery_services.trainer.datasets import DatasetError
    from distillery_services.trainer.multi import run_multi_training

    from distillery.cli.progress import progress

    specs, req = _multi_request(filter_refs, data, kind, params, seed, promote, state_dir, registry, label_store,
                                filters_dir, ray_address)
    with progress(err, f"train {'+'.join(s.ref for s in specs)}") as update:
        try:
            summary = run_multi_training(specs, req, update)
        except (DatasetError, ValueError, StageFailed) as exc:
            raise _fail(str(exc)) from None
    _print_multi(specs, summary, report)


def _multi_request(filter_refs: list[str], data: list[str], kind: str, params: dict[str, str], seed: int,
                   promote: bool, state_dir: Path | None, registry: str, label_store: str,
                   filters_dir: Path | None, ray_address: str):
    """The specs and the TrainRequest of a multi student; checked before training (two distinct filters,
    valid parameters, labels for each), so that a mistake exits 2 at once."""
    from distillery_services.trainer.factory import multi_student_for
    from distillery_services.trainer.request import (
        TrainRequest,
        check_labels_exist,
        default_dirs,
        split_params,
    )

    from distillery.filters import UnknownFilterError

    if kind not in ("", "multi"):
        raise _fail(f"training several filters at once needs --student multi, not --student {kind}")
    if len(filter_refs) < 2:
        raise _fail("--student multi trains several filters jointly: give two or more --filter "
                    f"(got {', '.join(filter_refs)})")
    catalog = _catalog(filters_dir)
    try:
        specs = [catalog.resolve(ref) for ref in filter_refs]
    except UnknownFilterError as exc:
        raise _fail(str(exc)) from None
    paths = _data_files(specs, data, catalog.resolve)
    dirs = default_dirs(_state_dir(state_dir))
    store_url = label_store or dirs["label_store_url"]
    try:
        multi_student_for(specs, split_params(params)[1], seed)  # two distinct filters, valid parameters
        for spec in specs:
            check_labels_exist(spec, paths.get(spec.ref, ""), store_url)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    req = TrainRequest(kind="multi", label_store_url=store_url, seed=seed, params=params, promote=promote,
                       registry_root=registry or dirs["registry_root"], datasets_dir=dirs["datasets_dir"],
                       embed_cache_dir=dirs["embed_cache_dir"], filters=[s.ref for s in specs], labels_paths=paths,
                       use_ray=True, ray_address=ray_address)
    return specs, req


def _print_multi(specs: list, summary: dict, report: Path | None) -> None:
    """The multi model, then each filter's registered version, metrics and report."""
    from distillery_services.trainer.request import summary_json

    _print_ray(summary)
    version = summary.get("model_version", "")
    console.print(f"[bold green]multi model[/] [cyan]{version}[/] for {len(specs)} filters (weights "
                  f"{summary['multi_fingerprint']}, joint dataset {summary['dataset_hash']})")
    for spec in specs:
        f = summary["filters"][spec.ref]
        m = f["metrics"]
        console.print(f"[bold green]registered[/] {spec.ref} [cyan]{version}[/]"
                      + (" [bold](promoted)[/]" if summary.get("promoted") else ""))
        console.print(f"  test MAE {m['test_mae']:.3f} (raw {m['test_mae_raw']:.3f}, mean predictor "
                      f"{m['mean_predictor_mae']:.3f}); coverage {m['coverage']:.1%}, width "
                      f"{m['interval_width']:.2f}; {m['n_test']:.0f} test articles")
        if report:
            from distillery_services.trainer.reports import write_report

            t = f["test"]
            path = write_report(report / spec.ref.replace("/", "-"), spec, f["evaluation"], t["y"], t["calibrated"],
                                t["lower"], t["upper"], title="Test split",
                                context={"model": version, "dataset": f["dataset_hash"],
                                         "multi_dataset": summary["dataset_hash"]})
            console.print(f"  report: {path}")
    if not report:
        console.print_json(summary_json({"metrics": summary["metrics"]}))


def evaluate(
    model: Annotated[str, typer.Option(help="Version id, registry folder of a version, or 'promoted' "
                                            "[default: the promoted version, else the newest of the filter]")] = "",
    data: Annotated[Path | None, typer.Option(help="JSONL of labelled articles; default: the model's frozen "
                                                   "test split.")] = None,
    filter_ref: Annotated[str, typer.Option("--filter", help="Filter (name or name/vN).")] = "",
    state_dir: Annotated[Path | None, typer.Option(help="Local state (registry, datasets).")] = None,
    registry: Annotated[str, typer.Option(help="Registry path or fsspec URI; default <state>/registry.")] = "",
    filters_dir: Annotated[Path | None, typer.Option(help="Folder of filter packages.")] = None,
    out: Annotated[Path, typer.Option(help="Report folder (report.md, report.json, PNGs).")] = Path("build/eval"),
) -> None:
    """Evaluate a registered model: per-dimension MAE/RMSE/Spearman, bands, recall, tiers, coverage."""
    from distillery_services.trainer.evaluation import evaluate as run_eval
    from distillery_services.trainer.reports import write_report

    from distillery.registry import ModelRegistry

    dirs_state = _state_dir(state_dir)
    reg = ModelRegistry(registry or dirs_state / "registry")
    catalog = _catalog(filters_dir)
    info = _model_to_evaluate(reg, model, filter_ref)
    spec = catalog.get(info.filter_name, info.filter_version)
    loaded = reg.load(info)
    texts, y, source, noise = _evaluation_data(spec, info, data, dirs_state)
    with console.status(f"scoring {len(texts)} articles"):
        raw, calibrated, lower, upper = loaded.predict(texts)
    result = run_eval(spec, y, raw, calibrated, lower, upper)
    path = write_report(out, spec, result, y, calibrated, lower, upper, title="Evaluation",
                        context={"model": info.version_id, "kind": info.kind, "data": source,
                                 **({"inter_oracle_mae": round(noise["mean_abs_diff_all"], 3)} if noise else {})})
    console.print(f"[bold]{spec.ref}[/] model [cyan]{info.version_id}[/] on {escape(source)}: MAE "
                  f"[bold]{result['mae']:.3f}[/] (raw {result['mae_raw']:.3f}, mean predictor "
                  f"{result['mean_predictor_mae']:.3f}), coverage {result.get('coverage', 0):.1%}")
    console.print(f"report: {path}")


def _model_to_evaluate(reg, model: str, filter_ref: str):
    """The registry entry ``--model``/``--filter`` name: a version folder, a version id, the promoted version,
    or (none promoted, no --model) the newest version of the filter; exits 2 when there is none."""
    from distillery.registry import RegistryError

    try:
        if Path(model).is_dir() and (Path(model) / "manifest.json").exists():
            manifest = json.loads((Path(model) / "manifest.json").read_text())
            return reg.get(manifest["filter_name"], manifest["version_id"])
        if not filter_ref:
            candidates = [i for i in reg.list() if i.version_id == model]
            if model in ("", "promoted") or not candidates:
                raise _fail("name the filter with --filter (or give a version id the registry holds)")
            return candidates[0]
        name, _, version = filter_ref.partition("/")
        if model in ("", "promoted"):
            info = reg.promoted(name)
            if info is None and not model:
                # Right after `distillery train` (which does not promote by itself): its newest version.
                wanted = int(version.lstrip("v") or 0)
                newest = [i for i in reg.list(name) if not wanted or i.filter_version == wanted]
                info = newest[0] if newest else None
                if info is not None:
                    console.print(f"no version of {name} is promoted: evaluating the newest, "
                                  f"{info.version_id}")
        else:
            info = reg.get(name, model)
        if info is None:
            raise _fail(f"no {'promoted ' if model == 'promoted' else ''}model for {name}; train one "
                        "(distillery train --filter ...) or pass --model VERSION")
        return info
    except RegistryError as exc:
        raise _fail(str(exc)) from None


def _evaluation_data(spec, info, data: Path | None, dirs_state: Path):
    """(texts, targets, description, label noise or None): the records of ``--data``, else the filter's frozen
    test articles in the dataset the model was trained on."""
    import numpy as np
    from distillery_services.trainer.datasets import Dataset, DatasetError, records_from_jsonl

    from distillery.students import compose_text

    if data is not None:
        if not data.is_file():
            raise _fail(f"data file {data} does not exist")
        recs = [r for r in records_from_jsonl(data) if all(r.scores.get(d) is not None for d in spec.dimension_names)]
        if not recs:
            raise _fail(f"{data} has no records with all dimensions of {spec.ref}")
        texts = [compose_text(r.title, r.text) for r in recs]
        y = np.array([[float(r.scores[d]) for d in spec.dimension_names] for r in recs])
        return texts, y, str(data), None
    folder = dirs_state / "datasets" / info.filter_name / f"v{info.filter_version}" / info.dataset_hash
    try:
        ds = Dataset.load(folder)
    except DatasetError:
        raise _fail(f"the dataset {info.dataset_hash} this model was trained on is not in {folder.parent}; "
                    "pass --data") from None
    from distillery_services.trainer.datasets import FrozenSplit, frozen_test_ids

    # The filter's frozen test articles (the same ones every version of this filter is compared on);
    # the dataset's whole test split when the filter has none frozen yet.
    frozen = FrozenSplit.load(dirs_state / "datasets", f"{info.filter_name}/v{info.filter_version}")
    keep = set(frozen_test_ids(ds, frozen))
    test = [e for e in ds.split("test") if e.id in keep]
    texts = [e.input_text for e in test]
    y = np.array([e.targets for e in test])
    source = f"frozen test split ({len(test)} articles) of dataset {info.dataset_hash}"
    return texts, y, source, ds.report.get("label_noise")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
