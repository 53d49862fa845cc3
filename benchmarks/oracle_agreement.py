"""Multi-oracle agreement on the first version's multi-oracle runs (../shared/datasets/origin/oracle).

For every (filter, version, run) labelled by two or more oracles, import each oracle's labels into a
temporary label store (model = the provider alias of the record: gemini, gemini-flash, gemini-pro, claude,
with the resolved model id shown beside it), compute the median consensus and the agreement report
(per-dimension MAE and Pearson between oracles and against the consensus).

    .venv/bin/python benchmarks/oracle_agreement.py [--data DIR] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

from distillery_services.oracle_gateway.consensus import agreement

from distillery.articles import read_jsonl
from distillery.config import REPO_ROOT
from distillery.store import LabelStore

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "datasets" / "origin" / "oracle"


def runs(data: Path) -> dict[tuple[str, str, str], list[Path]]:
    groups: dict[tuple[str, str, str], list[Path]] = defaultdict(list)
    for path in sorted(data.glob("*.jsonl")):
        parts = path.stem.split("__")
        if len(parts) == 4:
            groups[(parts[0], parts[1], parts[2])].append(path)
    return {k: v for k, v in groups.items() if len(v) >= 2}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = p.parse_args()
    reports, sections = [], []
    for (filt, version, run), paths in sorted(runs(args.data).items()):
        name = filt.replace("-", "_")
        ver = version.lstrip("v") if version.lstrip("v").isdigit() else "1"
        with tempfile.TemporaryDirectory() as tmp:
            store = LabelStore.open(Path(tmp) / "labels.sqlite")
            resolved = {}
            for path in paths:
                alias = path.stem.split("__")[3]
                first = next(iter(read_jsonl(path)), {})
                resolved[alias] = first.get("oracle_model_resolved", "")
                store.import_jsonl(path, f"{name}/v{ver}", oracle_model=alias)
            report = agreement(store, name, int(ver), write_consensus=True)
            consensus_n = store.count(name, int(ver), oracle_model="consensus-median")
            store.close()
        data = report.as_dict() | {"run": run, "resolved_models": resolved, "consensus_labels": consensus_n}
        reports.append(data)
        sections.append(f"#### {filt} {version} — run `{run}` (models: "
                        + ", ".join(f"{a} = {m}" for a, m in resolved.items()) + ")\n\n" + report.markdown())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "oracle_agreement.json").write_text(json.dumps(reports, indent=1))
    text = "# Multi-oracle agreement on the origin multi-oracle runs\n\n" + "\n\n".join(sections) + "\n"
    (args.out / "oracle_agreement.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
