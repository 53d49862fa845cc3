"""Synthetic corpus: articles whose text carries known latent dimension scores for a filter.

This is the embedded default's data source when no real articles or LLM provider are configured. It is
clearly synthetic: every article has ``metadata["synthetic"] = "true"`` and its latent scores in
``metadata["synthetic_scores"]``; the ``synthetic`` oracle provider returns those scores plus noise. It
never pretends to be real news, and it is deterministic for a given seed.

How the text carries the scores: for each dimension the generator writes sentences built from that
dimension's own scale text for the band its latent score falls in (with some sentences drawn from a
neighbouring band, filler sentences and shuffled order as noise), so a student can learn the mapping
from text to score, but not trivially. A share of articles is off-topic (all dimensions 0-2) and uses the
filter's own prefilter exclusion keywords, so the prefilter has something to block.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from typing import Any

from distillery.articles import derive_id
from distillery.filters.spec import SCALE_BANDS, FilterSpec

SYNTHETIC = "synthetic"
SYNTHETIC_FILTER = "synthetic_filter"
SYNTHETIC_SCORES = "synthetic_scores"

_PLACES = ["Rotterdam", "Nairobi", "Lima", "Osaka", "Tampere", "Accra", "Porto", "Dhaka", "Leipzig", "Quito",
           "Brisbane", "Kraków", "Montréal", "Pune", "Bergen", "Cusco", "Tartu", "Mombasa", "Valencia", "Hanoi"]
_ACTORS = ["a municipal agency", "a regional cooperative", "a university team", "a national ministry",
           "a community network", "an independent foundation", "a consortium of small firms", "local volunteers",
           "a public hospital group", "a water utility", "a teachers' union", "a startup collective"]
_FILLER = [
    "The announcement came after months of consultation with residents and outside experts.",
    "Officials declined to give a timeline for the next phase.",
    "Several details of the plan were still under discussion at the time of writing.",
    "Local media covered the event, and reactions on social platforms were mixed.",
    "A spokesperson said further information would be published in the coming weeks.",
    "The organisers thanked partners and funders at a press briefing on Tuesday.",
    "Critics questioned parts of the approach, while supporters pointed to early signs of interest.",
    "The budget figures quoted in the release could not be checked independently.",
    "Weather delayed part of the schedule, according to a statement from the organisers.",
    "An earlier version of the project was paused in 2021 for lack of funding.",
]
_OFF_TOPIC = [
    ("Transfer rumours heat up before the derby", ("The striker scored twice in the league match on Sunday, and "
     "fans debated the coach's line-up for the cup final.")),
    ("Celebrity couple spotted at gala premiere", ("The actress wore a designer gown on the red carpet while "
     "photographers crowded the entrance of the cinema.")),
    ("Flash sale: new smartphone at lowest price ever", ("Use the discount code at checkout to get the gadget "
     "with free shipping; the deal ends at midnight.")),
    ("Police arrest suspect after late-night robbery", ("The suspect was detained near the station after a "
     "shop owner reported the theft, officers said.")),
    ("Ten gaming laptops ranked for this season", ("Our reviewers tested the graphics cards, screens and "
     "keyboards of the most popular models this month.")),
]
_WORD = re.compile(r"[A-Za-z][A-Za-z\-']+")


def _band_of(score: float) -> str:
    index = min(int(score // 2), 4) if score < 9 else 4
    if 2 < score < 3:
        index = 0 if score < 2.5 else 1
    return SCALE_BANDS[min(max(index, 0), 4)]


def _human(name: str) -> str:
    return name.replace("_", " ")


def _sentence_for(dim_name: str, band_text: str, rng: random.Random) -> str:
    text = band_text.strip().rstrip(".")
    text = text[0].lower() + text[1:] if text else text
    templates = [
        "On {dim}, the account describes {text}.",
        "In terms of {dim}, observers note {text}.",
        "Assessed for {dim}, the story shows {text}.",
        "As for {dim}: {text}.",
        "Regarding {dim}, the evidence suggests {text}.",
    ]
    return rng.choice(templates).format(dim=_human(dim_name), text=text)


def latent_scores(spec: FilterSpec, rng: random.Random, off_topic: bool) -> dict[str, float]:
    """Correlated per-dimension scores: a shared article quality plus per-dimension variation."""
    if off_topic:
        return {d.name: round(rng.uniform(0, 2) * 2) / 2 for d in spec.dimensions}
    quality = rng.betavariate(2.0, 2.2) * 10
    scores = {}
    for d in spec.dimensions:
        value = min(max(quality + rng.gauss(0, 1.6), 0.0), 10.0)
        scores[d.name] = round(value * 2) / 2
    return scores


def make_article(spec: FilterSpec, index: int, rng: random.Random, off_topic: bool) -> dict[str, Any]:
    scores = latent_scores(spec, rng, off_topic)
    place, actor = rng.choice(_PLACES), rng.choice(_ACTORS)
    if off_topic:
        title, lead = rng.choice(_OFF_TOPIC)
        blocked_terms = [kw for cat in spec.prefilter.exclusions for kw in cat.keywords]
        extra = rng.sample(blocked_terms, k=min(2, len(blocked_terms))) if blocked_terms else []
        body = [lead] + [f"Readers searched for {term} news in {place} this week." for term in extra]
        body += rng.sample(_FILLER, k=3)
    else:
        top = max(scores, key=scores.get)
        title = f"{actor.capitalize()} in {place} reports on {_human(top)}"
        body = [f"In {place}, {actor} published details of a new initiative this week."]
        for d in rng.sample(spec.dimensions, k=len(spec.dimensions)):
            band = _band_of(scores[d.name])
            body.append(_sentence_for(d.name, d.scale[band], rng))
            # Noise: sometimes a second sentence from a neighbouring band.
            if rng.random() < 0.35:
                i = SCALE_BANDS.index(band) + rng.choice([-1, 1])
                body.append(_sentence_for(d.name, d.scale[SCALE_BANDS[min(max(i, 0), 4)]], rng))
        body += rng.sample(_FILLER, k=rng.randint(2, 4))
        rng.shuffle(body[1:])
    text = " ".join(body)
    url = f"https://synthetic.example/{spec.name}/{index:06d}"
    return {
        "id": derive_id(url),
        "title": title,
        "text": text,
        "url": url,
        "source": "synthetic",
        "source_type": "synthetic",
        "language": "en",
        "published_at": f"2026-{1 + index % 12:02d}-{1 + index % 28:02d}T08:00:00Z",
        "metadata": {
            SYNTHETIC: "true",
            SYNTHETIC_FILTER: spec.ref,
            SYNTHETIC_SCORES: json.dumps(scores, sort_keys=True),
            "off_topic": "true" if off_topic else "false",
        },
    }


def generate(spec: FilterSpec, count: int, seed: int = 0, off_topic_share: float = 0.15) -> Iterator[dict]:
    """Yield ``count`` synthetic article records for ``spec`` (deterministic for a given seed)."""
    if count < 0:
        raise ValueError("count must be >= 0")
    if not 0 <= off_topic_share <= 1:
        raise ValueError("off_topic_share must be between 0 and 1")
    rng = random.Random(f"{spec.ref}:{seed}")
    for i in range(count):
        yield make_article(spec, i, rng, off_topic=rng.random() < off_topic_share)


def scores_of(record_or_metadata: dict) -> dict[str, float] | None:
    """The latent scores of a synthetic article record (or its metadata), else None."""
    meta = record_or_metadata.get("metadata", record_or_metadata)
    raw = meta.get(SYNTHETIC_SCORES)
    return json.loads(raw) if raw else None
