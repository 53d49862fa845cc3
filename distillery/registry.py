"""The model registry: immutable model versions and a promoted pointer per filter.

Layout under the registry root (a local folder by default, any fsspec URI when fsspec is installed)::

    <root>/<filter_name>/v<filter_version>/<version_id>/
        manifest.json      kind, dimensions, dataset hash, code version, created_at, filter ref
        metrics.json       held-out metrics recorded at registration
        calibration.json   isotonic maps + conformal intervals (distillery.calibration)
        reference_distribution.json   share of the model's calibrated val+test predictions per score band,
                           per dimension and for the overall score (the drift reference, distillery.drift;
                           absent in old versions)
        student/           the student's own files (its manifest.json names its kind)
    <root>/<filter_name>/promoted.json   the served version and the promotion history (written atomically)

Versions are written to a temporary name and renamed into place, so a reader never sees half a version,
and they are never modified afterwards. The inference service uses :meth:`ModelRegistry.promoted`,
:meth:`ModelRegistry.load` and :meth:`LoadedModel.predict`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from distillery import identifiers
from distillery.calibration import Calibration
from distillery.config import REPO_ROOT
from distillery.drift import check_reference

MANIFEST = "manifest.json"
METRICS = "metrics.json"
CALIBRATION = "calibration.json"
STUDENT_DIR = "student"
POINTER = "promoted.json"
logger = logging.getLogger(__name__)
REFERENCE = "reference_distribution.json"
# Up to MAX_SAMPLES held-out (validation) texts stored with a version: what the inference service calibrates an
# int8 encoder on and checks it against, instead of synthetic texts. They are the registry owner's own articles.
SAMPLES = "samples.json"
MAX_SAMPLES = 64
MAX_SAMPLE_CHARS = 20_000


class RegistryError(LookupError):
    """A model version or filter that the registry does not hold, or nothing to roll back to."""


@lru_cache(maxsize=1)
def code_version() -> str:
    """The package version plus the git commit of the working tree when there is one."""
    try:
        from importlib.metadata import version

        pkg = version("llm-distillery")
    except Exception:  # noqa: BLE001
        pkg = "0"
    try:
        sha = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{pkg}+{sha}" if sha else pkg


def new_version_id() -> str:
    """Sortable by creation time, unique: ``20261126T101500-3f2a9c``."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class ModelInfo:
    """One registered model version."""

    filter_name: str
    filter_version: int
    version_id: str
    kind: str
    dimensions: list[str]
    uri: str
    created_at: str
    dataset_hash: str = ""
    code_version: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    promoted: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    # views of one jointly trained ``multi`` student (empty for other kinds): ``model_id`` (the version id
    # all views share), ``fingerprint`` (MultiStudent.fingerprint of the weights), ``filters``, ``columns``,
    # ``dataset_hash`` (of the joint dataset); equal ``model_id``s mean one shared model
    multi: dict[str, Any] = field(default_factory=dict)

    @property
    def filter_ref(self) -> str:
        return f"{self.filter_name}/v{self.filter_version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Storage:
    """Local paths, or an fsspec filesystem for URIs such as ``s3://bucket/models`` or ``memory://x``."""

    def __init__(self, root: Path | str, storage_options: dict[str, Any] | None = None):
        text = str(root)
        self.remote = "://" in text and not text.startswith("file://")
        if self.remote:
            try:
                import fsspec
            except ImportError:
                raise ValueError(f"registry URI {text} needs fsspec (pip install fsspec)") from None
            self.protocol = text.split("://", 1)[0]
            options = dict(storage_options or {})
            if self.protocol in ("s3", "s3a", "gs", "gcs", "az", "abfs"):
                # Another process (the trainer) changes the store: a cached listing would hide new versions.
                options.setdefault("use_listings_cache", False)
            try:
                self.fs, self.root = fsspec.core.url_to_fs(text, **options)
            except ImportError as exc:
                raise ValueError(f"registry URI {text} needs the fsspec driver of {self.protocol}: {exc}") from None
        else:
            self.fs = None
            self.root = str(Path(text.removeprefix("file://")).expanduser().resolve())
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def join(self, *parts: str) -> str:
        """``root/part/...``; each part is one plain name and the result stays inside the root (local folders:
        symbolic links included), so no request can reach another registry or any other file."""
        key = identifiers.contained_key(self.root, *parts, what="registry path")
        if not self.remote:
            identifiers.contained_path(self.root, *parts, what="registry path")
        return key

    def uri(self, path: str) -> str:
        return f"{self.protocol}://{path.lstrip('/')}" if self.remote and self.protocol != "memory" else (
            f"memory://{path}" if self.remote else path)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path) if self.remote else os.path.exists(path)

    def read_text(self, path: str) -> str:
        if self.remote:
            with self.fs.open(path, "r", encoding="utf-8") as fh:
                return fh.read()
        return Path(path).read_text(encoding="utf-8")

    def write_text_atomic(self, path: str, text: str) -> None:
        if self.remote:
            with self.fs.open(path, "w", encoding="utf-8") as fh:  # object stores replace whole objects
                fh.write(text)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)

    def listdir(self, path: str) -> list[str]:
        if self.remote:
            if not self.fs.exists(path):
                return []
            return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False))
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def publish_dir(self, local: Path, dest: str) -> None:
        """Move a fully written local folder to ``dest``; refuse to overwrite (versions are immutable)."""
        if self.exists(dest):
            raise FileExistsError(f"model version {dest.rsplit('/', 1)[-1]} already exists")
        if self.remote:
            self.fs.put(str(local), dest, recursive=True)
            return
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        staging = Path(dest).parent / f".staging-{Path(dest).name}"
        shutil.copytree(local, staging)
        os.rename(staging, dest)

    def local_copy(self, path: str, cache_root: Path) -> Path:
        if not self.remote:
            return Path(path)
        target = cache_root / path.strip("/").replace("/", "__")
        if not (target / MANIFEST).exists():
            tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=".dl-"))
            self.fs.get(path.rstrip("/") + "/", str(tmp), recursive=True)
            os.replace(tmp, target) if not target.exists() else shutil.rmtree(tmp)
        return target


class LoadedModel:
    """A registered version in memory: ``predict(texts) -> (raw, calibrated, lower, upper)``, each (n, n_dims)."""

    def __init__(self, info: ModelInfo, student, calibration: Calibration,
                 reference: dict[str, Any] | None = None, samples: Sequence[str] | None = None):
        self.info = info
        self.student = student
        self.calibration = calibration
        # {"bands": [...], "shares": {dimension|"overall": {band: share}}, ...}; None for versions without one
        self.reference = reference
        self.samples = list(samples or [])  # held-out texts stored with the version (empty for older ones)

    @property
    def dimensions(self) -> list[str]:
        return list(self.info.dimensions)

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        raw = np.asarray(self.student.predict(list(texts)), dtype=np.float64).reshape(len(texts), -1)
        calibrated, lower, upper = self.calibration.apply(raw)
        return raw, calibrated, lower, upper

    def predict_with_spread(self, texts: Sequence[str]):
        """Like :meth:`predict` plus the ensemble members' spread (zeros for single models)."""
        if hasattr(self.student, "predict_with_spread"):
            raw, spread = self.student.predict_with_spread(list(texts))
        else:
            raw = np.asarray(self.student.predict(list(texts)), dtype=np.float64)
            spread = np.zeros_like(raw)
        calibrated, lower, upper = self.calibration.apply(raw)
        return raw, calibrated, lower, upper, spread


class ModelRegistry:
    """Immutable model versions per filter, with promote/rollback of a per-filter pointer."""

    def __init__(self, root: Path | str, cache_dir: Path | str | None = None,
                 storage_options: dict[str, Any] | None = None):
        self.storage = _Storage(root, storage_options)
        self.root = str(root)
        self.cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / "distillery-registry-cache")
        self._lock = threading.Lock()

    # -- paths: only from checked identifiers (distillery.identifiers), and inside the root -------------
    def _version_path(self, filter_name: str, filter_version: int, version_id: str) -> str:
        identifiers.filter_name(filter_name, "filter.name")
        identifiers.filter_version(filter_version, "filter.version", allow_latest=False)
        identifiers.model_version(version_id, "version")
        return self.storage.join(filter_name, f"v{filter_version}", version_id)

    def _pointer_path(self, filter_name: str) -> str:
        return self.storage.join(identifiers.filter_name(filter_name, "filter.name"), POINTER)

    def _filter_dir(self, filter_name: str) -> str:
        return self.storage.join(identifiers.filter_name(filter_name, "filter.name"))

    # -- write ---------------------------------------------------------------------------------------
    def register(self, spec, student, calibration: Calibration, metrics: dict[str, float] | None = None,
                 dataset_hash: str = "", extra: dict[str, Any] | None = None,
                 reference: dict[str, Any] | None = None, version_id: str = "",
                 samples: Sequence[str] | None = None) -> ModelInfo:
        """Write a new immutable version for ``spec`` (a FilterSpec) and return its info.

        ``reference`` (from :func:`distillery.drift.reference_distribution`) is stored as ``reference_distribution.json``.
        ``version_id`` (default: a new one) lets the views of one multi student share their id.
        ``samples`` (held-out texts; the first MAX_SAMPLES, each cut to MAX_SAMPLE_CHARS) go to ``samples.json``.
        """
        if list(student.dimensions) != list(spec.dimension_names):
            raise ValueError(f"student dimensions {student.dimensions} differ from {spec.ref}'s "
                             f"{spec.dimension_names}")
        version_id = version_id or new_version_id()
        created = datetime.now(timezone.utc).isoformat(timespec="microseconds")  # orders same-second versions
        dest = self._version_path(spec.name, spec.version, version_id)
        manifest = {
            "filter_name": spec.name,
            "filter_version": spec.version,
            "version_id": version_id,
            "kind": student.kind,
            "dimensions": list(spec.dimension_names),
            "dataset_hash": dataset_hash,
            "code_version": code_version(),
            "created_at": created,
            "params": getattr(student, "params", {}),
            **(extra or {}),
        }
        clean_metrics = {k: float(v) for k, v in (metrics or {}).items() if _is_number(v)}
        with tempfile.TemporaryDirectory(prefix="distillery-register-") as tmp:
            local = Path(tmp) / version_id
            student.save(local / STUDENT_DIR)
            calibration.save(local / CALIBRATION)
            if reference is not None:
                check_reference(reference, spec.dimension_names)
                (local / REFERENCE).write_text(json.dumps(reference, indent=2, sort_keys=True), encoding="utf-8")
            if samples:
                texts = [str(t)[:MAX_SAMPLE_CHARS] for t in list(samples)[:MAX_SAMPLES]]
                (local / SAMPLES).write_text(json.dumps({"texts": texts}), encoding="utf-8")
            (local / METRICS).write_text(json.dumps(clean_metrics, indent=2, sort_keys=True), encoding="utf-8")
            (local / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str),
                                          encoding="utf-8")
            self.storage.publish_dir(local, dest)
        return self._info_from(manifest, clean_metrics, dest, promoted=False)

    def promote(self, filter_name: str, version_id: str) -> ModelInfo:
        """Serve ``version_id`` for ``filter_name``; the previous version is kept in the history."""
        info = self.get(filter_name, version_id)
        with self._lock:
            pointer = self._read_pointer(filter_name)
            history = list(pointer.get("history", []))
            current = pointer.get("version_id")
            if current and current != version_id:
                history.append(current)
            self._write_pointer(filter_name, version_id, info.filter_version, history)
        return self.get(filter_name, version_id)

    def rollback(self, filter_name: str) -> ModelInfo:
        """Serve the version promoted before the current one."""
        with self._lock:
            pointer = self._read_pointer(filter_name)
            history = list(pointer.get("history", []))
            if not history:
                raise RegistryError(f"nothing to roll back to for {filter_name}: no earlier promoted version")
            previous = history.pop()
            info = self.get(filter_name, previous)
            self._write_pointer(filter_name, previous, info.filter_version, history)
        return self.get(filter_name, previous)

    def _write_pointer(self, filter_name: str, version_id: str, filter_version: int, history: list[str]) -> None:
        doc = {
            "filter_name": filter_name,
            "version_id": version_id,
            "filter_version": filter_version,
            "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "history": history[-50:],
        }
        self.storage.write_text_atomic(self._pointer_path(filter_name), json.dumps(doc, indent=2))

    def _read_pointer(self, filter_name: str) -> dict[str, Any]:
        path = self._pointer_path(filter_name)
        if not self.storage.exists(path):
            return {}
        try:
            return json.loads(self.storage.read_text(path))
        except json.JSONDecodeError as exc:
            raise RegistryError(f"the promoted pointer of {filter_name} is corrupt: {exc}") from None

    # -- read ----------------------------------------------------------------------------------------
    def _info_from(self, manifest: dict[str, Any], metrics: dict[str, float], path: str,
                   promoted: bool) -> ModelInfo:
        return ModelInfo(
            filter_name=manifest["filter_name"], filter_version=int(manifest["filter_version"]),
            version_id=manifest["version_id"], kind=manifest["kind"], dimensions=list(manifest["dimensions"]),
            uri=self.storage.uri(path), created_at=manifest.get("created_at", ""),
            dataset_hash=manifest.get("dataset_hash", ""), code_version=manifest.get("code_version", ""),
            metrics=metrics, promoted=promoted, params=manifest.get("params", {}),
            multi=manifest.get("multi") or {},
        )

    def _read_version(self, path: str, promoted_id: str | None) -> ModelInfo | None:
        manifest_path = f"{path}/{MANIFEST}"
        if not self.storage.exists(manifest_path):
            return None
        manifest = json.loads(self.storage.read_text(manifest_path))
        metrics_path = f"{path}/{METRICS}"
        metrics = json.loads(self.storage.read_text(metrics_path)) if self.storage.exists(metrics_path) else {}
        return self._info_from(manifest, metrics, path, promoted=manifest["version_id"] == promoted_id)

    def filters(self) -> list[str]:
        """Filter names with a folder in the registry (entries that are not filter names are ignored)."""
        return [n for n in self.storage.listdir(self.storage.root) if _is_valid(identifiers.filter_name, n)]

    def list(self, filter_name: str | None = None) -> list[ModelInfo]:
        """Registered versions, newest first (all filters when ``filter_name`` is None)."""
        names = [identifiers.filter_name(filter_name, "filter.name")] if filter_name else self.filters()
        out: list[ModelInfo] = []
        for name in names:
            promoted_id = self._read_pointer(name).get("version_id")
            for vdir in self.storage.listdir(self.storage.join(name)):
                if not (vdir.startswith("v") and vdir[1:].isdigit()):
                    continue
                for version_id in self.storage.listdir(self.storage.join(name, vdir)):
                    if not _is_valid(identifiers.model_version, version_id):
                        continue  # staging folders and anything not written by register()
                    info = self._read_version(self.storage.join(name, vdir, version_id), promoted_id)
                    if info:
                        out.append(info)
        return sorted(out, key=lambda i: (i.created_at, i.version_id), reverse=True)

    def get(self, filter_name: str, version_id: str) -> ModelInfo:
        identifiers.model_version(version_id, "version")
        promoted_id = self._read_pointer(filter_name).get("version_id")
        for vdir in self.storage.listdir(self._filter_dir(filter_name)):
            if vdir.startswith("v") and vdir[1:].isdigit():
                info = self._read_version(self.storage.join(filter_name, vdir, version_id), promoted_id)
                if info:
                    return info
        raise RegistryError(f"no model version {version_id!r} for filter {filter_name!r} in the registry")

    def promoted(self, filter_name: str) -> ModelInfo | None:
        """The version served for ``filter_name``, or None when none was promoted."""
        version_id = self._read_pointer(filter_name).get("version_id")
        return self.get(filter_name, version_id) if version_id else None

    def load(self, info: ModelInfo) -> LoadedModel:
        from distillery.students import load_student

        path = self._version_path(info.filter_name, info.filter_version, info.version_id)
        if not self.storage.exists(f"{path}/{MANIFEST}"):
            raise RegistryError(f"model version {info.version_id} of {info.filter_ref} is not in the registry")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        local = self.storage.local_copy(path, self.cache_dir)
        student = load_student(local / STUDENT_DIR)
        calibration_file = local / CALIBRATION
        calibration = (Calibration.load(calibration_file) if calibration_file.exists()
                       else Calibration.identity(info.dimensions))
        return LoadedModel(info, student, calibration, reference=_read_reference(local / REFERENCE, info),
                           samples=_read_samples(local / SAMPLES))

    def reference(self, info: ModelInfo) -> dict[str, Any] | None:
        """The stored reference distribution of ``info``, or None for versions registered without one."""
        path = f"{self._version_path(info.filter_name, info.filter_version, info.version_id)}/{REFERENCE}"
        if not self.storage.exists(path):
            return None
        try:
            doc = json.loads(self.storage.read_text(path))
            check_reference(doc, info.dimensions)
        except (json.JSONDecodeError, ValueError) as exc:
            raise RegistryError(f"the reference distribution of model version {info.version_id} is unusable: "
                                f"{exc}") from None
        return doc


def _read_reference(path: Path, info: ModelInfo) -> dict[str, Any] | None:
    """The reference next to a loaded version; an unusable one is logged and ignored (the model still serves)."""
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        check_reference(doc, info.dimensions)
    except (json.JSONDecodeError, ValueError) as exc:
        logger.warning("ignoring unusable reference distribution %s: %s", path, exc)
        return None
    return doc


def _is_valid(check, value: str) -> bool:
    try:
        check(value)
    except ValueError:
        return False
    return True


def _is_number(value: Any) -> bool:
    try:
        return np.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _read_samples(path: Path) -> list[str]:
    """The held-out texts next to a loaded version; none (an empty list) when absent or unreadable."""
    if not path.exists():
        return []
    try:
        texts = json.loads(path.read_text(encoding="utf-8"))["texts"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        logger.warning("ignoring unusable samples %s: %s", path, exc)
        return []
    return [t for t in texts if isinstance(t, str)] if isinstance(texts, list) else []
