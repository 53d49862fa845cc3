"""Prefilter rule-engine throughput on one core: every example filter at once, on ~5 KB articles.

Goal (issue 3): >= 20,000 articles/s on one core for the four example filters together on 5 KB articles
(the first version's deployed prefilters: 44 articles/s together on such articles).

Articles: real texts from the shared oracle sets, built three ways (see ``article_sets``): bodies
concatenated to 5,000 characters, single long bodies, and non-English bodies (a synthetic fallback when
the set is absent). The process is pinned to one CPU. Throughput is reported on wall time and on CPU time
of the process (the development machine is shared; CPU time is what one core spends, and it is the figure
to judge on a loaded machine); the load average is recorded before and after. p50/p99 are per-article
wall times of ``engine.check`` (all filters in one call). Each row also splits one article's CPU time
between building the cleaned window, the keyword scan and the per-filter decisions. ``--baseline REV``
measures another revision's engine in the same run, interleaved with this one.

    .venv/bin/python benchmarks/prefilter_throughput.py [--articles 20000] [--repeat 3] [--baseline HEAD]

Where the time goes, by phase and line: ``benchmarks/prefilter_profile.py`` (py-spy).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import SUSTAINABILITY, write_results

ARTICLE_CHARS = 5000


_WORDS = ["the", "of", "and", "to", "in", "a", "is", "that", "for", "on", "with", "as", "was", "by", "at", "from", "it", "be", "this", "are", "an", "have", "has", "were", "which", "or", "not", "their", "more", "its", "after", "said", "year", "new", "two", "first", "people", "government", "city", "council", "company", "report", "research", "data", "market", "price", "energy", "solar", "wind", "grid", "battery", "climate", "emissions", "water", "farm", "project", "results", "study", "model", "system", "network", "software", "smartphone", "deal", "police", "match", "team", "season", "film", "music", "school", "hospital", "health", "patients", "policy", "plan", "budget", "investment", "growth", "local", "national", "international", "week", "today", "über", "café", "naïve", "résumé", "“quoted”", "–", "déjà", "société", "Straße"]


def synthetic_records(rng: random.Random, n: int = 500) -> list[tuple[str, str, str, str]]:
    """Word-soup articles (about one in six with non-ASCII text), for machines without the shared set."""
    ascii_words = [w for w in _WORDS if w.isascii()]
    out = []
    for i in range(n):
        words = _WORDS if i % 6 == 0 else ascii_words
        title = " ".join(rng.choices(ascii_words, k=9)).capitalize()
        text = ". ".join(" ".join(rng.choices(words, k=14)).capitalize() for _ in range(70))
        out.append((title, text, f"https://news{i % 40}.example/a/{i}", "en"))
    return out


def _read_records(paths) -> list[tuple[str, str, str, str]]:
    """(title, text, url, language) of every distinct article (by text) in the given oracle files."""
    seen: set[str] = set()
    out = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                text = r.get("text") or ""
                if not text or text in seen:
                    continue
                seen.add(text)
                out.append((r.get("title") or "", text, r.get("url") or "", r.get("language") or ""))
    return out


def _concatenate(records, n: int, rng: random.Random, pool=None) -> list[dict]:
    """Article i: record i's body, then random bodies from ``pool`` (default: all) up to 5,000 characters."""
    pool = pool or records
    out = []
    for i in range(n):
        title, text, url, lang = records[i % len(records)]
        parts = [text]
        while sum(len(p) + 1 for p in parts) < ARTICLE_CHARS:
            parts.append(pool[rng.randrange(len(pool))][1] or "filler text")
        out.append({"title": title, "text": " ".join(parts)[:ARTICLE_CHARS], "url": url, "language": lang})
    return out


def article_sets(n: int, seed: int = 7, synthetic: bool = False) -> dict[str, tuple[str, list[dict]]]:
    """The article sets measured, by name: (how they are built, articles). 5,000 characters each.

    - ``concatenated``: bodies of the sustainability set (82% English, 18% Dutch), each followed by random
      other bodies of the set until 5,000 characters;
    - ``single long bodies``: every distinct real body of at least 5,000 characters in the shared oracle
      files (one article each, cut to 5,000; no joins between unrelated texts);
    - ``mixed languages``: the non-English bodies of every shared oracle file (Dutch, German, Spanish,
      Portuguese, Italian, French, ...), each followed by other bodies of the same language.
    Without the shared set: one synthetic word-soup set.
    """
    rng = random.Random(seed)
    if synthetic or not SUSTAINABILITY.is_file():
        return {"synthetic": ("word soup, one in six articles with non-ASCII words",
                              _concatenate(synthetic_records(rng), n, rng))}
    sets = {}
    main = _read_records([SUSTAINABILITY])
    sets["concatenated"] = ("sustainability set bodies, each followed by random others up to 5,000 chars",
                            _concatenate(main, n, rng))
    every = _read_records(sorted(SUSTAINABILITY.parent.glob("*.jsonl")))
    long = [r for r in every if len(r[1]) >= ARTICLE_CHARS]
    sets["single long bodies"] = (
        f"the {len(long)} distinct real bodies of >= {ARTICLE_CHARS:,} chars in the shared oracle files, cut",
        [{"title": t, "text": x[:ARTICLE_CHARS], "url": u, "language": lang}
         for t, x, u, lang in (long[i % len(long)] for i in range(n))])
    by_lang: dict[str, list] = {}
    for r in every:
        if r[3] and r[3] != "en":
            by_lang.setdefault(r[3], []).append(r)
    foreign = [r for r in every if r[3] and r[3] != "en"]
    rng.shuffle(foreign)
    mixed = []
    for i in range(n):
        rec = foreign[i % len(foreign)]
        mixed += _concatenate([rec], 1, rng, by_lang[rec[3]])
    counts = {lang: len(v) for lang, v in sorted(by_lang.items(), key=lambda kv: -len(kv[1]))}
    sets["mixed languages"] = (
        "non-English bodies of every shared oracle file, each followed by others of its language: "
        + ", ".join(f"{k} {v}" for k, v in counts.items()), mixed)
    return sets


def baseline_engine_class(rev: str):
    """The PrefilterEngine of git revision ``rev``, imported beside the working tree's (same-run baseline).

    Its modules are written to a temporary package with their ``distillery_services.prefilter`` (or, before the
    rename, ``services.prefilter``) imports renamed.
    """
    import importlib
    import subprocess
    import tempfile

    repo = Path(__file__).resolve().parent.parent
    root = Path(tempfile.mkdtemp(prefix="prefilter-baseline-"))
    package = root / "baseline_prefilter"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("engine", "text", "literals"):
        source = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:services/prefilter/{name}.py"],
                                check=True, capture_output=True, text=True).stdout
        (package / f"{name}.py").write_text(re.sub(r"\b(distillery_)?services\.prefilter\.", "baseline_prefilter.", source))
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("baseline_prefilter.engine").PrefilterEngine
    finally:
        sys.path.remove(str(root))
        import shutil

        shutil.rmtree(root, ignore_errors=True)


CHUNK = 250  # articles per CPU-time sample (see measure)


def measure(engines: dict, articles: list[dict], language: bool, detect: bool, repeat: int) -> dict[str, dict]:
    """``repeat`` passes over ``articles`` per engine, the engines taking turns chunk by chunk (CHUNK
    articles), so that a busy machine slows them alike. Per engine: wall and CPU throughput of its best
    pass, per-article wall-time percentiles, and ``articles_per_s_per_core_best_chunks``: the articles over
    the sum of each chunk's least CPU time (robust to other processes taking the core now and then)."""
    n = len(articles)
    starts = list(range(0, n, CHUNK))
    out = {}
    stats = {name: {"wall": [0.0] * repeat, "cpu": [0.0] * repeat, "chunks": [[] for _ in starts], "per": []}
             for name in engines}
    for rep in range(repeat):
        for ci, lo in enumerate(starts):
            chunk = articles[lo:lo + CHUNK]
            for name, engine in engines.items():
                check = engine.check
                st = stats[name]
                per = st["per"] if rep == 0 else None
                wall0, cpu0 = time.perf_counter(), time.thread_time()
                for a in chunk:
                    t0 = time.perf_counter_ns()
                    check(a["title"], a["text"], a["url"], "", a["language"] if language else "", None, detect)
                    if per is not None:
                        per.append(time.perf_counter_ns() - t0)
                cpu = time.thread_time() - cpu0
                st["wall"][rep] += time.perf_counter() - wall0
                st["cpu"][rep] += cpu
                st["chunks"][ci].append(cpu)
    for name, st in stats.items():
        per = sorted(st["per"])
        floor = sum(min(c) for c in st["chunks"])
        out[name] = {
            "articles": n,
            "passes": repeat,
            "articles_per_s_wall": n / min(st["wall"]),
            "articles_per_s_cpu": n / min(st["cpu"]),
            "articles_per_s_per_core_best_chunks": n / floor,
            "cpu_us_per_article_best_chunks": floor / n * 1e6,
            "p50_us": per[n // 2] / 1000,
            "p99_us": per[min(n - 1, int(n * 0.99))] / 1000,
            "mean_us": statistics.fmean(per) / 1000,
        }
    return out


def split(engine, articles: list[dict], repeat: int) -> dict[str, float]:
    """Where one article's CPU time goes (us, thread CPU time, best of ``repeat``): building the cleaned
    window, the keyword scan (automaton + gated regexes), and the per-filter decisions."""
    make_window = sys.modules[type(engine).__module__].make_window  # the engine's own text module

    everything = engine._all
    windows = []
    best = {"window": float("inf"), "scan": float("inf"), "decide": float("inf")}
    for _ in range(repeat):
        t0 = time.thread_time()
        windows = [make_window(a["title"], a["text"], engine._max_scan, collapse=False) for a in articles]
        t1 = time.thread_time()
        scans = [engine._scan(w, everything) or engine._scan(
            make_window(a["title"], a["text"], engine._max_scan), everything) for w, a in zip(windows, articles)]
        t2 = time.thread_time()
        for w, (acc, npos, first) in zip(windows, scans):
            for fi in everything:
                engine._decide(fi, acc, npos, first, None, "", 5000, 5000, "en")
        t3 = time.thread_time()
        n = len(articles)
        for key, dt in (("window", t1 - t0), ("scan", t2 - t1), ("decide", t3 - t2)):
            best[key] = min(best[key], dt / n * 1e6)
    return best


def _arguments():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--articles", type=int, default=20000, help="articles per set")
    ap.add_argument("--repeat", type=int, default=3, help="runs per mode; the best run is reported")
    ap.add_argument("--filters-dir", type=Path, default=Path(__file__).resolve().parent.parent / "filters")
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last one allowed)")
    ap.add_argument("--synthetic", action="store_true", help="generated articles instead of the shared set")
    ap.add_argument("--name", default="prefilter_throughput", help="result file name in benchmarks/results")
    ap.add_argument("--sets", default="", help="comma-separated article sets to run (default: all)")
    ap.add_argument("--baseline", default="", metavar="GIT_REV",
                    help="also measure the engine of this git revision in the same run, interleaved (e.g. HEAD~3)")
    return ap.parse_args()


def _row(set_name: str, mode: str, best: dict) -> list[str]:
    sp = best["split_us"]
    return [set_name, mode, f"{best['articles']:,}", f"{best['articles_per_s_wall']:,.0f}",
            f"{best['articles_per_s_cpu']:,.0f}", f"{best['articles_per_s_per_core_best_chunks']:,.0f}",
            f"{best['p50_us']:.1f}", f"{best['p99_us']:.1f}",
            "" if sp is None else f"{sp['window']:.1f} / {sp['scan']:.1f} / {sp['decide']:.1f}"]


def measure_sets(engines: dict, sets: dict, articles: int, repeat: int) -> tuple[dict, list]:
    """Every mode of every set, engines interleaved; results by row name and the table's rows."""
    results: dict[str, dict] = {}
    rows = []
    for set_name, (_how, arts_all) in sets.items():
        modes = [("language given", arts_all, True, False)]
        if set_name in ("concatenated", "synthetic"):
            modes.append(("language detected (stage default)", arts_all[: max(2000, articles // 5)], False, True))
        for label, arts, language, detect in modes:
            measured = measure(engines, arts, language, detect, repeat)
            for suffix, eng in engines.items():
                best = measured[suffix]
                best["split_us"] = split(eng, arts[:2000], repeat) if not detect else None
                results[f"{set_name}, {label}{suffix}"] = best
                rows.append(_row(set_name, label + suffix, best))
    return results, rows


def main() -> int:
    args = _arguments()
    allowed = sorted(os.sched_getaffinity(0))
    cpu = args.cpu if args.cpu is not None else allowed[-1]
    os.sched_setaffinity(0, {cpu})
    load_before = os.getloadavg()

    from distillery_services.prefilter.engine import PrefilterEngine

    from distillery.filters import FilterCatalog

    specs = FilterCatalog.load(args.filters_dir).latest()
    t0 = time.perf_counter()
    engine = PrefilterEngine(specs)
    compile_s = time.perf_counter() - t0
    engines = {"": engine}
    if args.baseline:
        engines[f" (baseline {args.baseline})"] = baseline_engine_class(args.baseline)(specs)
    sets = article_sets(args.articles, synthetic=args.synthetic)
    if args.sets:
        sets = {k: v for k, v in sets.items() if k in args.sets.split(",")}
    first = next(iter(sets.values()))[1]
    for eng in engines.values():  # warm-up (and the language model's load)
        measure({"": eng}, first[:2000], True, False, 1)
        measure({"": eng}, first[:50], False, True, 1)
    results, rows = measure_sets(engines, sets, args.articles, args.repeat)
    payload = {
        "goal_articles_per_s": 20000,
        "filters": [s.ref for s in specs],
        "article_chars": ARTICLE_CHARS,
        "article_sets": {name: how for name, (how, _a) in sets.items()},
        "pinned_cpu": cpu,
        "load_average_before": load_before,
        "load_average_at_end": os.getloadavg(),
        "note": ("articles/s (CPU time) is what one core does; wall time is depressed when the machine is shared; "
                 f"'best chunks' sums the least CPU time of each {CHUNK}-article chunk over the runs"),
        "compile_seconds": compile_s,
        "results": results,
    }
    write_results(args.name, payload,
                  ["articles", "mode", "n", "articles/s (wall)", "articles/s per core (CPU time)",
                   "per core, best chunks", "p50 us",
                   "p99 us", "CPU us: window / scan / decide"], rows,
                  "python benchmarks/prefilter_throughput.py " + " ".join(sys.argv[1:]))
    print(f"filters: {', '.join(payload['filters'])}; load average {load_before} -> {payload['load_average_at_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
