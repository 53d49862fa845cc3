"""Score articles concurrently with the asyncio client (e.g. inside a web back end).

    DISTILLERY_TARGET=127.0.0.1:50054 python examples/score_asyncio.py [--filter uplifting] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from distillery.client import ClientError
from distillery.client.aio import AsyncScoringClient


def articles(n: int) -> list[dict]:
    return [{"id": f"example-{i}", "title": f"Neighbours repair playground {i}",
             "text": "Residents raised money and rebuilt the playground together; the council matched the funds "
                     f"and {10 + i} families now use it every day."} for i in range(n)]


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target")
    p.add_argument("--filter", action="append")
    p.add_argument("--token")
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()
    limit = asyncio.Semaphore(args.concurrency)
    async with AsyncScoringClient(args.target, token=args.token, timeout=10.0) as client:

        async def one(article: dict):
            async with limit:  # bounded in-flight calls; the server batches concurrent ones together
                return await client.score(article, filters=args.filter)

        try:
            results = await asyncio.gather(*(one(a) for a in articles(args.count)))
        except ClientError as exc:
            print(f"scoring failed: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
    for scores in results:
        for s in scores:
            print(f"{s.article_id} {s.filter} {s.overall:.2f} {s.tier}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
