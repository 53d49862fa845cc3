"""Score articles with the blocking client.

    pip install 'llm-distillery[client]'
    DISTILLERY_TARGET=127.0.0.1:50054 python examples/score_sync.py [--filter uplifting] [--token T]

On Kubernetes, point it at the headless Service for client-side round-robin over every replica:
    DISTILLERY_TARGET=dns:///distillery-inference-headless.NAMESPACE.svc.cluster.local:50054
TLS: DISTILLERY_TLS_CA=ca.pem (add DISTILLERY_TLS_CERT/KEY for mutual TLS). Token: DISTILLERY_TOKEN.
"""

from __future__ import annotations

import argparse
import sys

from distillery.client import ClientError, ScoringClient

ARTICLES = [
    {"title": "Community garden feeds 300 families",
     "text": "Volunteers turned an empty lot into a garden that now supplies fresh vegetables to 300 families "
             "every week, with a waiting list for plots and a new school programme."},
    {"title": "Quarterly earnings beat expectations",
     "text": "The company reported revenue up 4% on the quarter, driven by cost cuts; shares rose in early trading."},
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", help="host:port (default: $DISTILLERY_TARGET)")
    p.add_argument("--filter", action="append", help="filter to score for (default: all served)")
    p.add_argument("--token", help="bearer token (default: $DISTILLERY_TOKEN)")
    args = p.parse_args()
    # Deadline 10 s per call; UNAVAILABLE / RESOURCE_EXHAUSTED are retried with backoff by default.
    with ScoringClient(args.target, token=args.token, timeout=10.0) as client:
        try:
            for scores in client.score_batch(ARTICLES, filters=args.filter):
                for s in scores:
                    dims = ", ".join(f"{name} {d.score:.1f}" for name, d in s.dimensions.items())
                    flag = " (uncertain)" if s.uncertain else ""
                    print(f"{s.article_id} {s.filter}: overall {s.overall:.2f} tier {s.tier}{flag}; {dims}")
        except ClientError as exc:
            print(f"scoring failed: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
