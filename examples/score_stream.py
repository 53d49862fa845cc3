"""Stream a JSONL file (or stdin) through ScoreStream: one result line per article, in order; a bad article
gets an error line and the stream goes on.

    DISTILLERY_TARGET=127.0.0.1:50054 python examples/score_stream.py articles.jsonl > scores.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys

from distillery.client import ClientError, ItemFailure, ScoringClient


def read(path: str):
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    with stream:
        for line in stream:
            if line.strip():
                record = json.loads(line)
                yield {k: record[k] for k in ("id", "title", "text", "url", "source") if record.get(k)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", nargs="?", default="-")
    p.add_argument("--target")
    p.add_argument("--filter", action="append")
    p.add_argument("--token")
    args = p.parse_args()
    failures = 0
    # No deadline on the stream itself (it lasts as long as the input); flow control bounds memory.
    with ScoringClient(args.target, token=args.token, timeout=None) as client:
        try:
            for item in client.score_stream(read(args.source), filters=args.filter):
                if isinstance(item, ItemFailure):
                    failures += 1
                    print(json.dumps({"error": {"code": item.code, "message": item.message}}))
                    continue
                print(json.dumps({"id": item[0].article_id if item else "",
                                  "scores": {s.filter: round(s.overall, 3) for s in item}}))
        except ClientError as exc:
            print(f"stream failed: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
