"""Which student a run builds: the kind, the spec's settings filled in, transfer sources, stacks and multi
students."""

from __future__ import annotations

import json
from typing import Any

from distillery_services.trainer.request import TrainRequest

from distillery.filters.spec import FilterSpec
from distillery.registry import ModelRegistry
from distillery.students import make_student
from distillery.students.multi import qualified


def resolve_kind(spec: FilterSpec, kind: str) -> str:
    return kind or spec.student.kind


def student_for(spec: FilterSpec, kind: str, params: dict[str, Any], seed: int = 0, embed_cache_dir: str = "",
                sources: list[tuple[str, Any]] | None = None):
    """Build the untrained student; spec settings (encoder, token budget) apply unless params override them.

    With ``sources`` (ref, fitted student) the student of ``kind`` is the base of a ``transfer`` student that
    warm-starts from them (distillery/students/transfer.py; the spec's ``student.transfer_mode``)."""
    kind = resolve_kind(spec, kind)
    if kind == "transfer":
        raise ValueError("a transfer student is the base kind plus related filters' students: name the base "
                         "with --kind (e.g. lexical) and the related filters with --transfer-from OLD[,OLD2]")
    if kind == "multi":
        raise ValueError(f"a multi student trains several filters jointly: name {spec.ref} and at least one "
                         "more filter (StartJob `filters`, or `distillery train --filter A --filter B`)")
    params = dict(params)
    extra: dict[str, Any] = {}
    if kind == "probe":
        params.setdefault("encoder", spec.student.encoder)
        params.setdefault("head_tokens", spec.student.truncation.head_tokens)
        params.setdefault("tail_tokens", spec.student.truncation.tail_tokens)
        params.setdefault("seed", seed)
        if embed_cache_dir:
            extra["cache_dir"] = embed_cache_dir
    elif kind == "finetune":
        params.setdefault("base_model", spec.student.base_model)
        params.setdefault("head_tokens", spec.student.truncation.head_tokens)
        params.setdefault("tail_tokens", spec.student.truncation.tail_tokens)
        params.setdefault("seed", seed)
    elif kind == "ensemble":
        params.setdefault("seed", seed)
    elif kind == "stack":
        params.setdefault("seed", seed)
        params["members"] = stack_members_for(spec, params.get("members"))
        if embed_cache_dir:
            extra["cache_dir"] = embed_cache_dir
    base = make_student(kind, spec.dimension_names, filter=spec.ref, **params, **extra)  # bad params fail here
    if not sources:
        return base
    transfer = make_student("transfer", spec.dimension_names, filter=spec.ref, base_kind=kind,
                            base_params={k: v for k, v in params.items()}, mode=spec.student.transfer_mode,
                            seed=seed)
    transfer.base_extra = extra  # the embedding cache: a training-time setting, not saved with the model
    return transfer.set_sources([student for _, student in sources], [ref for ref, _ in sources])


def transfer_sources(spec: FilterSpec, req: TrainRequest) -> list[tuple[str, Any]]:
    """The promoted students of the filters this one transfers from (``req.transfer_from``, else the spec's)."""
    names = [n.strip() for n in (req.transfer_from or spec.student.transfer_from) if n.strip()]
    if not names:
        return []
    if not req.registry_root:
        raise ValueError("transfer needs the model registry that holds the source filters' promoted students")
    registry = ModelRegistry(req.registry_root)
    sources = []
    for name in dict.fromkeys(n.partition("/")[0] for n in names):
        if name == spec.name:
            raise ValueError(f"{spec.name} cannot transfer from itself; name related filters")
        info = registry.promoted(name)
        if info is None:
            raise ValueError(f"no promoted model of {name} to transfer from: train and promote one first "
                             f"(distillery train --filter {name} --promote), or leave it out of --transfer-from")
        sources.append((f"{info.filter_name}/v{info.filter_version}", registry.load(info).student))
    return sources


def stack_members_for(spec: FilterSpec, members: Any) -> Any:
    """A stack's members with the spec's encoder and token budget filled in for its probe members."""
    from distillery.students.stack import DEFAULTS as STACK_DEFAULTS
    from distillery.students.stack import check_members

    if isinstance(members, str):
        try:
            members = json.loads(members)
        except json.JSONDecodeError as exc:
            raise ValueError(f"stack student parameter members is not valid JSON: {exc}") from None
    checked = check_members(STACK_DEFAULTS["members"] if members is None else members)
    for member in checked:
        if member["kind"] == "probe":
            member["params"] = {"encoder": spec.student.encoder,
                                "head_tokens": spec.student.truncation.head_tokens,
                                "tail_tokens": spec.student.truncation.tail_tokens, **member["params"]}
    return checked


def multi_student_for(specs: list[FilterSpec], params: dict[str, Any], seed: int = 0, embed_cache_dir: str = ""):
    """The untrained multi student of ``specs``: columns ``<ref>:<dim>`` in request order; the first filter's
    spec settings (encoder, token budget) apply unless ``params`` override them (one encoder serves all)."""
    if len(specs) < 2:
        raise ValueError("a multi student trains several filters jointly: name at least two filters")
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"name each filter once in a multi student (the registry promotes per filter name); "
                         f"repeated: {', '.join(twice)}")
    first = specs[0].student
    params = dict(params)
    params.setdefault("encoder", first.encoder)
    params.setdefault("head_tokens", first.truncation.head_tokens)
    params.setdefault("tail_tokens", first.truncation.tail_tokens)
    params.setdefault("seed", seed)
    columns = [qualified(s.ref, d) for s in specs for d in s.dimension_names]
    return make_student("multi", columns, **params, **({"cache_dir": embed_cache_dir} if embed_cache_dir else {}))


def multi_fingerprint(student) -> str:
    """The identity of a fitted multi student's weights (what the inference side compares to share a pass)."""
    if hasattr(student, "fingerprint"):
        return student.fingerprint()
    import hashlib

    digest = hashlib.sha256(json.dumps([student.dimensions, student.params], sort_keys=True, default=str).encode())
    for name, tensor in sorted(student._net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]
