"""Load and validate filter packages, with errors that name the file and the field to fix."""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from distillery import identifiers
from distillery.filters.prompt import CONTENT_CAPS, KNOWN_PLACEHOLDERS, REQUIRED_PLACEHOLDERS
from distillery.filters.spec import FilterSpec

SPEC_FILE = "filter.yaml"
PROMPT_FILE = "prompt.md"
_VERSION_DIR = re.compile(r"^v(\d+)$")
_PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\}")


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
    if "prompt_template" in data:
        raise FilterSpecError(spec_path, ["prompt_template: unknown key (the prompt lives in prompt.md)"])
    try:
        spec = FilterSpec.model_validate({**data, "prompt_template": template})
    except ValidationError as exc:
        raise FilterSpecError(spec_path, _problems(exc, data)) from None
    _check_template(spec, prompt_path)
    _check_location(spec, spec_path)
    return spec


def _problems(exc: ValidationError, data: dict) -> list[str]:
    """One line per problem, each starting with the field path, with a hint for misspelt keys."""
    problems: list[str] = []
    errors = exc.errors()
    # A misspelt required key shows up twice (unknown "wieght", missing "weight"): report only the typo.
    misspelt = set()
    for err in errors:
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][-1]), _allowed_keys(err["loc"][:-1]), n=1)
            if close:
                misspelt.add((*err["loc"][:-1], close[0]))
    for err in errors:
        if err["type"] == "missing" and tuple(err["loc"]) in misspelt:
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:
            # Cross-field checks already name their fields, one problem per line.
            problems += [line for line in msg.splitlines() if line]
            continue
        where = _format_loc(err["loc"], data)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(err["loc"][:-1])
            close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
            msg = "unknown key" + (f"; did you mean {close[0]!r}?" if close else "")
            if allowed:
                msg += f" (allowed: {', '.join(allowed)})"
        elif err["type"] == "missing":
            msg = "required key is missing"
        problems.append(f"{where}: {msg}")
    return problems


def _allowed_keys(loc: tuple) -> list[str]:
    """The field names of the model found at ``loc`` inside a FilterSpec (empty if it is not a model)."""
    model: type[BaseModel] | None = FilterSpec
    for item in loc:
        if model is None:
            return []
        if isinstance(item, int):
            continue
        field_info = model.model_fields.get(str(item))
        model = _model_of(field_info.annotation) if field_info else None
    if model is None:
        return []
    return [name for name in model.model_fields if name != "prompt_template"]


def _model_of(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):  # list[Dimension], Truncation | None, ...
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _check_template(spec: FilterSpec, prompt_path: Path) -> None:
    """Every placeholder in prompt.md must be known, and content caps must have a place to go."""
    problems = []
    unknown = sorted(set(_PLACEHOLDER.findall(spec.prompt_template)) - set(KNOWN_PLACEHOLDERS))
    if unknown:
        problems.append(
            f"unknown placeholder(s) {', '.join(unknown)}; known: {', '.join(KNOWN_PLACEHOLDERS)}"
        )
    if spec.content_caps and CONTENT_CAPS not in spec.prompt_template:
        problems.append(
            f"the spec has content_caps but the template lacks {CONTENT_CAPS}: the oracle would never see them"
        )
    if problems:
        raise FilterSpecError(prompt_path, problems)


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
    # Set by distillery.filters.search.discover: every folder searched, and where each name came from.
    roots: list[Path] = field(default_factory=list)
    origins: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path | str, only: list[str] | None = None) -> FilterCatalog:
        """Load every ``<root>/<name>/v<N>/``; ``only`` limits to ``name`` or ``name/vN`` entries."""
        root = Path(root)
        if not root.is_dir():
            raise FilterSpecError(root, ["filters folder does not exist"])
        bad = []
        for entry in only or []:
            try:
                identifiers.filter_ref(entry, "filters")
            except ValueError as exc:
                bad.append(str(exc))
        if bad:
            raise FilterSpecError("filters setting", bad)
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
        identifiers.filter_name(name, "filter.name")  # a name, never a path (distillery.identifiers)
        identifiers.filter_version(version, "filter.version")
        if version:
            spec = self.specs.get((name, version))
            if spec is None:
                known = sorted(v for (n, v) in self.specs if n == name)
                where = f" (searched {', '.join(map(str, self.roots))})" if self.roots and not known else ""
                hint = f"; loaded versions: {known}" if known else ""
                raise UnknownFilterError(f"unknown filter {name}/v{version}{where}{hint}")
            return spec
        versions = [v for (n, v) in self.specs if n == name]
        if not versions:
            where = f" (searched {', '.join(map(str, self.roots))})" if self.roots else ""
            raise UnknownFilterError(f"unknown filter {name!r}{where}; known: {', '.join(self.names()) or 'none'}")
        return self.specs[(name, max(versions))]

    def resolve(self, ref: str) -> FilterSpec:
        """Look up ``name`` or ``name/vN`` (InvalidIdentifierError, a ValueError, for anything else)."""
        return self.get(*identifiers.filter_ref(ref, "filter"))

    def names(self) -> list[str]:
        return sorted({n for (n, _) in self.specs})

    def latest(self) -> list[FilterSpec]:
        return [self.get(n) for n in self.names()]


def find_packages(root: Path | str) -> tuple[list[Path], list[FilterSpecError]]:
    """Package folders under ``root`` (``<name>/v<N>/``), plus errors for filter.yaml files found elsewhere."""
    root = Path(root)
    packages: list[Path] = []
    misplaced: list[FilterSpecError] = []
    for spec_path in sorted(root.rglob(SPEC_FILE)):
        rel = spec_path.parent.relative_to(root).parts
        # <root>/<name>/v<N>/ (a filters folder) or <root>/v<N>/ (one filter's folder of versions)
        if (len(rel) == 2 and _VERSION_DIR.match(rel[1])) or (len(rel) == 1 and _VERSION_DIR.match(rel[0])):
            packages.append(spec_path.parent)
        else:
            where = "/".join(rel) or "."
            problem = (f"a package must live at <filters>/<name>/v<N>/{SPEC_FILE}; this one is at "
                       f"{where}/{SPEC_FILE}, so it would never be loaded")
            misplaced.append(FilterSpecError(spec_path, [problem]))
    return packages, misplaced


def validate_path(path: Path | str) -> tuple[list[FilterSpec], list[FilterSpecError]]:
    """Validate a package folder, a filter.yaml, or a whole filters folder; return the good specs and every error.

    Unlike :meth:`FilterCatalog.load`, which stops at the first bad package, this reports all of them.
    """
    path = Path(path)
    if not path.exists():
        raise FilterSpecError(path, ["no such file or folder"])
    if path.is_file() or (path / SPEC_FILE).is_file():
        return [load_filter(path)], []
    packages, errors = find_packages(path)
    if not packages and not errors:
        raise FilterSpecError(path, [f"no filter packages found (expected <name>/v<N>/{SPEC_FILE} below it)"])
    specs: list[FilterSpec] = []
    for package in packages:
        try:
            specs.append(load_filter(package))
        except FilterSpecError as exc:
            errors.append(exc)
    return specs, errors
