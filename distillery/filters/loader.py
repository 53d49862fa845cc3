"""Load and validate filter packages, with errors that name the file and the field to fix."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from distillery.filters.prompt import REQUIRED_PLACEHOLDERS
from distillery.filters.spec import FilterSpec

SPEC_FILE = "filter.yaml"
PROMPT_FILE = "prompt.md"
_VERSION_DIR = re.compile(r"^v(\d+)$")


class FilterSpecError(ValueError):
    """A filter package is invalid. ``str()`` is a message a user can act on (file, field, problem)."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{self.path}: " + ("; ".join(problems) if len(problems) == 1 else
                                              "\n  - " + "\n  - ".join(problems)))


class UnknownFilterError(KeyError):
    """No loaded filter has this name (or version)."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0])


def _format_loc(loc: tuple, data: dict) -> str:
    """Turn pydantic's location (``('dimensions', 2, 'name')``) into ``dimensions[2] (agency).name``."""
    parts: list[str] = []
    node: object = data
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and 0 <= item < len(node) and isinstance(node[item], dict):
                name = node[item].get("name")
                if name:
                    label += f" ({name})"
            parts.append(label)
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
        else:
            parts.append(("." if parts else "") + str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def _spec_paths(path: Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.is_dir():
        return path / SPEC_FILE, path / PROMPT_FILE
    return path, path.with_name(PROMPT_FILE)


def load_filter(path: Path | str) -> FilterSpec:
    """Load ``filters/<name>/v<N>/`` (or its filter.yaml) and its prompt; raise FilterSpecError on any problem."""
    spec_path, prompt_path = _spec_paths(Path(path))
    if not spec_path.is_file():
        raise FilterSpecError(spec_path, [f"missing {SPEC_FILE} (expected at {spec_path})"])
    try:
        data = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FilterSpecError(spec_path, [f"not valid YAML: {exc}"]) from None
    except UnicodeDecodeError as exc:
        raise FilterSpecError(spec_path, [f"not UTF-8 text: {exc}"]) from None
    if not isinstance(data, dict):
        raise FilterSpecError(spec_path, ["the file must hold a mapping (name:, version:, dimensions:, ...)"])
    if not prompt_path.is_file():
        raise FilterSpecError(prompt_path, [f"missing {PROMPT_FILE}: every filter needs an oracle prompt template"])
    template = prompt_path.read_text(encoding="utf-8")
    missing = [p for p in REQUIRED_PLACEHOLDERS if p not in template]
    if missing:
        raise FilterSpecError(prompt_path, [f"prompt template lacks the placeholder(s) {', '.join(missing)}"])
    try:
        spec = FilterSpec.model_validate({**data, "prompt_template": template})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_format_loc(err['loc'], data)}: {msg}")
        raise FilterSpecError(spec_path, problems) from None
    _check_location(spec, spec_path)
    return spec


def _check_location(spec: FilterSpec, spec_path: Path) -> None:
    """A package at ``<name>/v<N>/`` must declare that name and version (renames happen at version bumps)."""
    version_dir = spec_path.parent.name
    match = _VERSION_DIR.match(version_dir)
    if not match:
        return  # loaded from an arbitrary folder (e.g. a scaffold being edited): nothing to compare
    problems = []
    if int(match.group(1)) != spec.version:
        problems.append(f"version: {spec.version} does not match its folder {version_dir}/")
    name_dir = spec_path.parent.parent.name
    if name_dir != spec.name:
        problems.append(f"name: {spec.name!r} does not match its folder {name_dir}/")
    if problems:
        raise FilterSpecError(spec_path, problems)


@dataclass
class FilterCatalog:
    """All filter packages under a root folder, addressable by name and version (0 = newest)."""

    root: Path
    specs: dict[tuple[str, int], FilterSpec] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path | str, only: list[str] | None = None) -> FilterCatalog:
        """Load every ``<root>/<name>/v<N>/``; ``only`` limits to ``name`` or ``name/vN`` entries."""
        root = Path(root)
        if not root.is_dir():
            raise FilterSpecError(root, ["filters folder does not exist"])
        catalog = cls(root=root)
        for spec_path in sorted(root.glob(f"*/v*/{SPEC_FILE}")):
            name, version_dir = spec_path.parent.parent.name, spec_path.parent.name
            if only and name not in only and f"{name}/{version_dir}" not in only:
                continue
            spec = load_filter(spec_path.parent)
            catalog.specs[(spec.name, spec.version)] = spec
        if only:
            found = {s.name for s in catalog.specs.values()} | {s.ref for s in catalog.specs.values()}
            missing = [o for o in only if o not in found]
            if missing:
                raise FilterSpecError(root, [f"no filter package for {', '.join(missing)}"])
        return catalog

    def get(self, name: str, version: int = 0) -> FilterSpec:
        if version:
            spec = self.specs.get((name, version))
            if spec is None:
                known = sorted(v for (n, v) in self.specs if n == name)
                hint = f"; loaded versions: {known}" if known else ""
                raise UnknownFilterError(f"unknown filter {name}/v{version}{hint}")
            return spec
        versions = [v for (n, v) in self.specs if n == name]
        if not versions:
            raise UnknownFilterError(f"unknown filter {name!r}; loaded: {', '.join(self.names()) or 'none'}")
        return self.specs[(name, max(versions))]

    def resolve(self, ref: str) -> FilterSpec:
        """Look up ``name`` or ``name/vN``."""
        name, _, version = ref.partition("/")
        return self.get(name, int(version.lstrip("v")) if version else 0)

    def names(self) -> list[str]:
        return sorted({n for (n, _) in self.specs})

    def latest(self) -> list[FilterSpec]:
        return [self.get(n) for n in self.names()]
