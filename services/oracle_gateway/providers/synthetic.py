"""The synthetic oracle: the embedded default when no LLM provider is configured. It is not an LLM.

* Articles from the synthetic corpus (``metadata["synthetic_scores"]`` = JSON {dimension: 0-10}) get
  those latent scores plus Gaussian noise (``noise_sigma``; the random generator is seeded by the article
  id, so a label is reproducible), clipped to [0, 10] and rounded to half points.
* Any other article gets a deterministic keyword heuristic: for each dimension, the keywords are the
  content words (5+ letters, not stop words) of its description and of its two top scale bands
  (7-8 and 9-10). The score is ``min(10, 2 * distinct keywords found in title + text)``, halved for the
  out-of-scope look (no keyword of any dimension found: every dimension 0).
* Evidence quotes one sentence of the article that contains a keyword of the dimension (for synthetic
  articles: a sentence that names the dimension, else the first sentence), else "No evidence in article".

The answer is the same JSON text an LLM would return, so it runs through the normal parse/validate path.
It reports provider ``synthetic``, model ``synthetic-oracle-v1`` and zero tokens and cost.
"""

from __future__ import annotations

import hashlib
import json
import random
import re

from distillery_services.oracle_gateway.providers.base import Provider, ProviderRequest, ProviderResponse

from distillery.filters.prompt import NO_EVIDENCE
from distillery.filters.spec import Dimension, FilterSpec

SYNTHETIC_MODEL = "synthetic-oracle-v1"
_WORD = re.compile(r"[a-z][a-z\-]{4,}")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_STOP = frozenset({
    "about", "above", "after", "again", "against", "among", "around", "because", "before", "being", "below",
    "between", "could", "doing", "during", "every", "further", "having", "itself", "might", "other",
    "others", "their", "there", "these", "those", "through", "under", "until", "which", "while", "would",
    "should", "score", "scores", "article", "articles", "shows", "little", "evidence", "clear", "strong",
    "major", "minor", "small", "large", "some", "many", "more", "most", "very", "with", "without", "within",
    "into", "from", "this", "that", "have", "than", "then", "them", "they", "what", "when", "where",
    "whose",
})


def keywords(dim: Dimension) -> set[str]:
    """The heuristic's keywords for one dimension (documented in the module docstring)."""
    text = " ".join([dim.name.replace("_", " "), dim.description, dim.scale["7-8"], dim.scale["9-10"]]).lower()
    return {w.strip("-") for w in _WORD.findall(text) if w not in _STOP}


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def _quote(sentence: str, limit: int = 200) -> str:
    return sentence if len(sentence) <= limit else sentence[: limit - 3].rstrip() + "..."


def _seed(article_id: str) -> int:
    return int.from_bytes(hashlib.sha256(article_id.encode("utf-8")).digest()[:8], "big")


def synthetic_answer(spec: FilterSpec, article_id: str, title: str, text: str, metadata: dict[str, str],
                     noise_sigma: float) -> dict[str, dict[str, object]]:
    """The oracle answer as a dict {dimension: {"score", "evidence"}}."""
    sentences = _sentences(text)
    latent = None
    raw = metadata.get("synthetic_scores")
    if raw:
        try:
            parsed = json.loads(raw)
            if isinstance(parsed, dict):
                latent = {k: float(v) for k, v in parsed.items() if isinstance(v, (int, float))}
        except (ValueError, TypeError):
            latent = None
    answer: dict[str, dict[str, object]] = {}
    if latent is not None:
        rng = random.Random(_seed(article_id))
        for dim in spec.dimensions:
            base = latent.get(dim.name, 0.0)
            noisy = base + (rng.gauss(0.0, noise_sigma) if noise_sigma > 0 else 0.0)
            score = round(min(max(noisy, 0.0), 10.0) * 2) / 2
            human = dim.name.replace("_", " ")
            hit = next((s for s in sentences if human in s.lower()), sentences[0] if sentences else "")
            answer[dim.name] = {"score": score, "evidence": _quote(hit) if hit else NO_EVIDENCE}
        return answer
    lowered = f"{title}\n{text}".lower()
    words = set(_WORD.findall(lowered))
    for dim in spec.dimensions:
        found = sorted(keywords(dim) & words)
        score = float(min(10, 2 * len(found)))
        hit = next((s for s in sentences if any(k in s.lower() for k in found)), "") if found else ""
        answer[dim.name] = {"score": score, "evidence": _quote(hit) if hit else NO_EVIDENCE}
    return answer


class SyntheticProvider(Provider):
    """Deterministic stand-in oracle (see the module docstring); never calls the network."""

    kind = "synthetic"

    def __init__(self, name: str = "synthetic", noise_sigma: float = 0.5):
        super().__init__(name, SYNTHETIC_MODEL)
        if noise_sigma < 0:
            raise ValueError("noise_sigma must be >= 0")
        self.noise_sigma = noise_sigma

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        a = request.article
        answer = synthetic_answer(request.spec, a.id, a.title, a.text, dict(a.metadata), self.noise_sigma)
        text = json.dumps(answer, ensure_ascii=False)
        return ProviderResponse(text=text, model=SYNTHETIC_MODEL, raw=text)
