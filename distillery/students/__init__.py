"""Student models: one interface (fit, predict, save, load), several kinds.

``lexical`` (n-gram TF-IDF + ridge), ``probe`` (frozen encoder + small head), ``ensemble`` (k members of
another kind), ``finetune`` (LoRA backbone on Ray Train), ``multi`` (one shared encoder, one head per filter) and
``stack`` (members of different kinds combined by a meta-model fitted on out-of-fold predictions). Every saved student is a folder with a ``manifest.json`` that :func:`load_student` reads.
"""

from distillery.students.base import Student
from distillery.students.manifest import (
    KINDS,
    StudentLoadError,
    compose_text,
    load_student,
    make_student,
    read_manifest,
    write_manifest,
)

__all__ = [
    "KINDS",
    "Student",
    "StudentLoadError",
    "compose_text",
    "load_student",
    "make_student",
    "read_manifest",
    "write_manifest",
]
