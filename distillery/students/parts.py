"""Member fits as independent parts (see :mod:`distillery.parallel`): what stacks and ensembles hand out.

A member is fitted on some rows of its inputs: texts for text students (``lexical``), embeddings for ``probe``
members, whose encoder pass the caller runs once for all of them (spread over the cluster, cached), so a part
never embeds anything. A part returns either the held-out rows' predictions (an out-of-fold fit) or the fitted
member itself (a final fit).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distillery.students.manifest import make_student

EMBEDDING_KINDS = frozenset({"probe"})  # kinds that fit on precomputed embeddings
# kinds without parts of their own: a whole fit is one part (the other kinds spread their own parts)
WHOLE_FIT_KINDS = frozenset({"lexical"})


def fit_student_part(student, texts, y, val_texts, val_y):
    """Fit a whole student (one part, on any node) and return it."""
    return student.fit(texts, y, val_texts, val_y)


def fold_part(student, texts: list[str], y: np.ndarray, train_idx: np.ndarray, held_idx: np.ndarray):
    """One cross-validation fold (one part): fit on ``train_idx`` (validated on the held rows, as in process)
    and return the held rows' predictions."""
    held = [texts[i] for i in held_idx]
    student.fit([texts[i] for i in train_idx], y[train_idx], held, y[held_idx])
    return student.predict(held)


def fit_member(kind: str, dimensions: list[str], filter_ref: str, params: dict[str, Any], inputs: Any,
               y: np.ndarray, train_idx: np.ndarray, val_inputs: Any, val_y: np.ndarray | None,
               held_idx: np.ndarray | None = None):
    """Fit a ``kind`` member on rows ``train_idx``; return its predictions of rows ``held_idx``, or the
    member when ``held_idx`` is None."""
    member = make_student(kind, dimensions, filter=filter_ref, **params)
    if kind in EMBEDDING_KINDS:
        has_val = val_inputs is not None and len(val_inputs) > 0
        member.fit_embeddings(inputs[train_idx], y[train_idx], val_inputs if has_val else None,
                              val_y if has_val else None)
        return member if held_idx is None else member.predict_embeddings(inputs[held_idx])
    member.fit([inputs[i] for i in train_idx], y[train_idx], val_inputs, val_y)
    return member if held_idx is None else member.predict([inputs[i] for i in held_idx])


def member_inputs(runner, member, texts: list[str], val_texts: list[str] | None, shared_texts: Any,
                  shared_val: Any, y: np.ndarray | None = None) -> tuple[Any, Any]:
    """(inputs, validation inputs) handles of one member: the shared texts, or for embedding kinds its
    embeddings (one encoder pass for train and validation texts together, int8 kept only within the drift
    gate when targets ``y`` are given), each shared once."""
    if member.kind not in EMBEDDING_KINDS:
        return shared_texts, shared_val
    val_texts = list(val_texts or [])
    if y is not None:
        X, Xv = member.embed_for_training(list(texts), y, val_texts)
    else:
        both = member.embed(list(texts) + val_texts)
        X, Xv = both[: len(texts)], (both[len(texts):] if val_texts else None)
    return runner.share(X), (runner.share(Xv) if Xv is not None else None)


def encoder_choice(member) -> dict[str, Any]:
    """The encoder runtime an embedding member really trained with (``auto`` resolved, int8 dropped by the drift
    gate): parameters the member's final fit must carry so that it predicts with the same embeddings."""
    if member.kind not in EMBEDDING_KINDS:
        return {}
    return {"runtime": member.params["runtime"], "int8": member.params["int8"]}
