"""Turn an oracle's text answer into validated dimension labels.

1. Extract the JSON object: strip markdown fences and surrounding prose, take the outermost balanced
   ``{...}`` (strings and escapes respected).
2. Repair common defects: ``//`` and ``/* */`` comments, trailing commas, Python literals
   (True/False/None), smart quotes; a bare number for a dimension becomes ``{"score": n}``.
3. Validate against the filter spec: every dimension present, score a number in [0, 10] (an answer on
   a 0-100 or 0-1 scale is *not* guessed at: it is an error), evidence a string (missing evidence
   becomes "No evidence in article"). Unknown extra keys are ignored.

A defect that repair cannot fix raises :class:`ResponseInvalidError`; the engine retries with a
corrective message (:func:`corrective_message`) and dead-letters the article after the last attempt.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from distillery.filters.prompt import NO_EVIDENCE
from distillery.filters.spec import FilterSpec

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}


class ResponseInvalidError(ValueError):
    """The answer cannot be turned into a valid label; ``problems`` lists what is wrong."""

    code = "DATA_LOSS"

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid oracle response: " + "; ".join(problems))


@dataclass(frozen=True)
class ParsedLabel:
    scores: dict[str, float]
    evidence: dict[str, str]
    repaired: bool


def _balanced_object(text: str) -> str | None:
    start = text.find("{")
    while start != -1:
        depth, in_str, esc = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        start = text.find("{", start + 1)
    return None


def _strip_comments(text: str) -> str:
    out, i, in_str, esc = [], 0, False, False
    while i < len(text):
        ch = text[i]
        if in_str:
            out.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            i += 1
            continue
        if ch == '"':
            in_str = True
            out.append(ch)
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = len(text) if j == -1 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = len(text) if j == -1 else j + 2
        elif text.startswith("#", i):
            j = text.find("\n", i)
            i = len(text) if j == -1 else j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _repair(text: str) -> str:
    text = text.replace("\u201c", '"').replace("\u201d", '"')
    text = _strip_comments(text)
    text = _TRAILING_COMMA.sub(r"\1", text)
    for py, js in _PY_LITERALS.items():
        text = re.sub(rf"(?<=[:\[,\s]){py}(?=[\s,}}\]])", js, text)
    return text


def extract_json(text: str) -> tuple[dict, bool]:
    """The JSON object in an answer and whether repair was needed; ResponseInvalidError if none."""
    if not text or not text.strip():
        raise ResponseInvalidError(["empty response"])
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        obj = _balanced_object(candidate)
        if obj is None:
            continue
        try:
            value = json.loads(obj)
            if isinstance(value, dict):
                return value, candidate is not text or obj.strip() != text.strip()
        except json.JSONDecodeError:
            pass
        try:
            value = json.loads(_repair(obj))
            if isinstance(value, dict):
                return value, True
        except json.JSONDecodeError:
            continue
    raise ResponseInvalidError(["no parseable JSON object in the response"])


def validate_answer(spec: FilterSpec, answer: dict) -> tuple[dict[str, float], dict[str, str], bool]:
    scores, evidence, problems, repaired = {}, {}, [], False
    for name in spec.dimension_names:
        if name not in answer:
            problems.append(f"missing dimension {name!r}")
            continue
        item = answer[name]
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            item, repaired = {"score": item}, True
        if not isinstance(item, dict):
            problems.append(f"{name}: expected an object with score and evidence, got {type(item).__name__}")
            continue
        score = item.get("score")
        if isinstance(score, str):
            try:
                score, repaired = float(score.strip()), True
            except ValueError:
                problems.append(f"{name}: score {score!r} is not a number")
                continue
        if not isinstance(score, (int, float)) or isinstance(score, bool) or math.isnan(score):
            problems.append(f"{name}: score {score!r} is not a number")
            continue
        if not 0 <= score <= 10:
            problems.append(f"{name}: score {score:g} is outside 0-10")
            continue
        ev = item.get("evidence")
        if ev is None or (isinstance(ev, str) and not ev.strip()):
            ev, repaired = NO_EVIDENCE, True
        if not isinstance(ev, str):
            ev, repaired = json.dumps(ev, ensure_ascii=False), True
        scores[name] = float(score)
        evidence[name] = ev.strip()
    if problems:
        raise ResponseInvalidError(problems)
    return scores, evidence, repaired


def parse_response(spec: FilterSpec, text: str) -> ParsedLabel:
    """Extract, repair and validate; raise ResponseInvalidError with every problem found."""
    answer, repaired_json = extract_json(text)
    scores, evidence, repaired_values = validate_answer(spec, answer)
    return ParsedLabel(scores, evidence, repaired_json or repaired_values)


def corrective_message(spec: FilterSpec, error: ResponseInvalidError) -> str:
    """The follow-up user message sent after an invalid answer."""
    return (
        "Your previous answer could not be used: " + "; ".join(error.problems) + ". "
        "Answer again with ONLY one JSON object that has exactly these keys: "
        + ", ".join(spec.dimension_names)
        + '. Each value must be {"score": <number from 0 to 10>, "evidence": "<exact quote or '
        + f"'{NO_EVIDENCE}'>\"}}. No prose, no markdown fences."
    )
