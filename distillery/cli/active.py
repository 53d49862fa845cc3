"""``distillery active-select``: which unlabelled articles to send to the oracle next (active learning)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

err = Console(stderr=True)


def _scores(record: dict, dims: list[str]) -> list[float] | None:
    raw = record.get("dimension_scores") or record.get("scores")
    if not isinstance(raw, dict):
        return None
    try:
        return [float(raw[d]["score"] if isinstance(raw[d], dict) else raw[d]) for d in dims]
    except (KeyError, TypeError, ValueError):
        return None


def active_select(
    filter_ref: Annotated[str, typer.Option("--filter", help="filter: name, name/vN or a package path")],
    labelled: Annotated[Path, typer.Option("--labelled", help="JSONL of oracle-scored articles (title, text, "
                                           "dimension_scores)")],
    pool: Annotated[Path, typer.Option("--pool", help="JSONL of unlabelled candidate articles (title, text)")],
    count: Annotated[int, typer.Option("--count", min=1, help="articles to pick")] = 100,
    strategy: Annotated[str, typer.Option("--strategy", help="random, uncertainty or diverse (expected error "
                                          "per oracle cost, spread by clustering)")] = "diverse",
    cost_weight: Annotated[float, typer.Option("--cost-weight", min=0.0, help="diverse: divide the expected "
                                               "error by the relative oracle cost to this power (0: ignore cost)")] = 1.0,
    committee: Annotated[bool, typer.Option("--committee/--no-committee", help="diverse: also weight the expected "
                                            "error by how far a ridge on sentence-encoder (MiniLM) embeddings "
                                            "disagrees with the lexical students (embeds every article once; "
                                            "cached under DISTILLERY_EMBED_CACHE when set)")] = True,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    filters_dir: Annotated[Path | None, typer.Option("--filters-dir", help="folder of filter packages")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="write the picked pool records here (JSONL; "
                                             "default: stdout)")] = None,
) -> None:
    """Pick the pool articles whose oracle labels should help the filter's student most."""
    from distillery import active
    from distillery.articles import read_jsonl
    from distillery.cli.filters import _resolve
    from distillery.students import compose_text

    if strategy not in active.STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(active.STRATEGIES)}")
    spec = _resolve(filter_ref, filters_dir)
    dims = spec.dimension_names
    texts, targets = [], []
    for record in read_jsonl(labelled):
        scores = _scores(record, dims)
        if scores is not None:
            texts.append(compose_text(record.get("title", ""), record.get("text", "")))
            targets.append(scores)
    if len(texts) < 2:
        raise ValueError(f"{labelled} holds {len(texts)} records scored on every dimension of {spec.ref}; need 2+")
    candidates = list(read_jsonl(pool))
    pool_texts = [compose_text(r.get("title", ""), r.get("text", "")) for r in candidates]
    prompt_tokens = max(1, len(spec.prompt_template) // 4)
    encode = None
    if committee and strategy == "diverse":
        from distillery.students.probe import ProbeStudent

        encode = ProbeStudent(dims, filter=str(spec.ref)).embed
    chosen, expected = active.plan_batch(texts, targets, pool_texts, count, strategy, seed=seed,
                                         prompt_tokens=prompt_tokens, cost_weight=cost_weight, encode=encode)
    lines = [json.dumps({**candidates[i], "expected_error": round(float(expected[i]), 4)}) for i in chosen]
    if out is None:
        typer.echo("\n".join(lines))
    else:
        out.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    committee_note = " with the encoder committee" if encode is not None else ""
    err.print(f"picked {len(chosen)} of {len(candidates)} pool articles ({strategy}{committee_note}) from "
              f"{len(texts)} labels")


def register(app: typer.Typer) -> None:
    app.command("active-select", help="Pick the unlabelled articles to send to the oracle next: random, "
                "uncertainty, or diverse (the student's expected error per oracle cost, spread over the pool "
                "by clustering).")(active_select)
