"""Generate labelled articles whose scores are learnable from the text (tests, demos, smoke benchmarks).

Each dimension gets a small topical vocabulary; an article mentions a dimension's words about as often as
its latent score says, and the label is the latent score plus Gaussian noise of a known size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TOPICS = [
    ["solar", "wind", "renewable", "emissions", "carbon", "climate", "battery", "grid"],
    ["peer-reviewed", "study", "evidence", "data", "measured", "trial", "researchers", "published"],
    ["community", "neighbours", "volunteers", "together", "families", "support", "local", "shared"],
    ["profit", "investment", "market", "revenue", "costs", "funding", "investors", "economy"],
    ["deployed", "operating", "installed", "commercial", "factory", "production", "scale", "customers"],
    ["justice", "rights", "equity", "fairness", "court", "law", "access", "inclusion"],
    ["forest", "river", "species", "wildlife", "habitat", "restoration", "wetland", "biodiversity"],
    ["school", "students", "teachers", "learning", "education", "classroom", "literacy", "skills"],
]
FILLER = ["the", "a", "of", "and", "to", "in", "on", "with", "for", "from", "by", "at", "this", "that", "was", "were", "said", "report", "today", "week", "city", "people", "year", "new", "officials", "news", "according", "plan", "people", "time", "part", "group", "country"]


def generate(dimensions: Sequence[str], n: int, seed: int = 0, noise: float = 0.5,
             duplicate_urls: int = 0) -> list[dict[str, Any]]:
    """``n`` records in the shared dataset JSONL shape (id, title, text, url, dimension_scores)."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        base = rng.uniform(0, 10)
        latent = np.clip(base + rng.normal(0, 2.0, len(dimensions)), 0, 10)
        words: list[str] = []
        for d, score in enumerate(latent):
            topic = TOPICS[d % len(TOPICS)]
            words += list(rng.choice(topic, size=round(score * 1.5)))
        words += list(rng.choice(FILLER, size=60))
        rng.shuffle(words)
        title_topic = TOPICS[int(np.argmax(latent)) % len(TOPICS)]
        title = f"Article {i}: {' '.join(rng.choice(title_topic, 3))}"
        labels = np.clip(np.round((latent + rng.normal(0, noise, len(dimensions))) * 2) / 2, 0, 10)
        url_id = i if i >= duplicate_urls else i % max(1, duplicate_urls // 2)
        records.append({
            "id": f"syn-{seed}-{i}",
            "title": title,
            "text": " ".join(words).capitalize() + ".",
            "url": f"https://example.org/{seed}/{url_id}",
            "dimension_scores": {d: float(s) for d, s in zip(dimensions, labels)},
            "oracle_model": "synthetic",
        })
    return records
