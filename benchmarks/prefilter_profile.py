"""Where the prefilter's time goes: py-spy samples ``engine.check`` on each real-text article set.

For every set that ``prefilter_throughput.py`` builds (concatenated bodies, single long bodies, mixed
languages), a child process pinned to one CPU checks the articles with every example filter for
``--seconds`` while py-spy (a sampling profiler, dev dependency) records its stacks at 1 kHz. Samples are
attributed to the engine's phases (building the cleaned window, the automaton itself, the keyword loop
around it, the gated regexes, the per-filter decisions, the rest of ``check``) and to the hottest functions
and lines. Wall-clock samples: on a loaded machine, time the process waits for the CPU lands on the line it
waits at, so read shares, not absolute times.

    .venv/bin/python benchmarks/prefilter_profile.py [--seconds 8] [--articles 3000]

Writes benchmarks/results/prefilter_profile.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import write_results

ROOT = Path(__file__).resolve().parent.parent
PY_SPY = Path(sys.executable).with_name("py-spy")
# Phase of a sample: the innermost engine frame that names one (checked from the leaf up).
PHASES = [
    ("_keyword_hits", "keyword loop (word boundaries, uses)"),
    ("_regex_hits", "gated regexes"),
    ("_to_characters", "gated regexes"),
    ("make_window", "window (HTML, NFKC, whitespace, case folding)"),
    ("_decide", "per-filter decisions"),
    ("_domain_hits", "domain rules"),
    ("guess_language", "language detection"),
    ("check", "check (the rest: arguments, language code, result)"),
]
_DRIVER = """
import sys, time
sys.path.insert(0, {bench!r}); sys.path.insert(0, {root!r})
from prefilter_throughput import article_sets
from distillery_services.prefilter.engine import PrefilterEngine
from distillery.filters import FilterCatalog
engine = PrefilterEngine(FilterCatalog.load({filters!r}).latest())
articles = article_sets({n})[{name!r}][1]
for a in articles[:500]:
    engine.check(a["title"], a["text"], a["url"], "", a["language"])
stop = time.monotonic() + {seconds}
while time.monotonic() < stop:
    for a in articles:
        engine.check(a["title"], a["text"], a["url"], "", a["language"])
"""


def profile_set(name: str, seconds: float, n: int, cpu: int) -> dict:
    """py-spy's raw (collapsed) stacks of ``seconds`` of engine.check on article set ``name``."""
    with tempfile.TemporaryDirectory() as tmp:
        driver = Path(tmp) / "driver.py"
        driver.write_text(_DRIVER.format(bench=str(ROOT / "benchmarks"), root=str(ROOT), n=n, name=name,
                                         filters=str(ROOT / "filters"), seconds=seconds))
        raw = Path(tmp) / "stacks.txt"
        subprocess.run(["taskset", "-c", str(cpu), str(PY_SPY), "record", "-r", "1000", "-f", "raw", "-o", str(raw),
                        "--", sys.executable, str(driver)], check=True, capture_output=True)
        return attribute(raw.read_text())


def _automaton_line() -> str:
    """py-spy shows the Rust automaton's time on the Python line that calls it: that line's frame suffix."""
    source = (ROOT / "services" / "prefilter" / "engine.py").read_text().splitlines()
    number = next(i for i, line in enumerate(source, 1) if "find_matches_as_indexes(" in line)
    return f"engine.py:{number})"


def attribute(collapsed: str) -> dict:
    """Samples inside ``check`` by phase, by function (self time) and by line."""
    automaton = _automaton_line()
    phases: collections.Counter = collections.Counter()
    functions: collections.Counter = collections.Counter()
    lines: collections.Counter = collections.Counter()
    total = 0
    for row in collapsed.splitlines():
        stack, _, count = row.rpartition(" ")
        frames = stack.split(";")
        inside = [i for i, f in enumerate(frames) if f.startswith("PrefilterEngine.check (")]
        if not inside:
            continue
        frames = frames[inside[-1]:]
        k = int(count)
        total += k
        names = [f.split(" (")[0].split(".")[-1] for f in frames]
        leaf = frames[-1]
        if leaf.startswith("PrefilterEngine._keyword_hits (") and leaf.endswith(automaton):
            phase = "automaton (Rust, Aho-Corasick DFA)"
        else:
            phase = next((label for key, label in PHASES if key in names), "other")
        phases[phase] += k
        functions[re.sub(r":\d+\)$", ")", leaf)] += k
        lines[leaf] += k
    share = {label: round(100 * v / total, 1) for label, v in phases.most_common()}
    return {"samples": total, "phase_share_percent": share,
            "top_functions_percent": {f: round(100 * v / total, 1) for f, v in functions.most_common(12)},
            "top_lines_percent": {f: round(100 * v / total, 1) for f, v in lines.most_common(12)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0, help="sampling time per article set")
    ap.add_argument("--articles", type=int, default=3000, help="articles per set")
    ap.add_argument("--name", default="prefilter_profile")
    args = ap.parse_args()
    if not PY_SPY.exists():
        print("py-spy is not installed (pip install -c constraints.txt py-spy)", file=sys.stderr)
        return 2
    cpu = max(os.sched_getaffinity(0))
    load = os.getloadavg()
    sets = ["concatenated", "single long bodies", "mixed languages"]
    results = {name: profile_set(name, args.seconds, args.articles, cpu) for name in sets}
    labels = ["automaton (Rust, Aho-Corasick DFA)", *dict.fromkeys(label for _k, label in PHASES), "other"]
    rows = [[label] + [f"{results[s]['phase_share_percent'].get(label, 0.0):.1f}" for s in sets] for label in labels]
    payload = {"load_average_before": load, "load_average_after": os.getloadavg(), "pinned_cpu": cpu,
               "sampling": "py-spy record -r 1000 (wall-clock samples of the pinned child process)",
               "results": results}
    write_results(args.name, payload, ["phase (% of samples in engine.check)", *sets], rows,
                  "python benchmarks/prefilter_profile.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
