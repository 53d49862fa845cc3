"""What an image is and installs, read from ``deploy/Dockerfile`` (one file, ``--build-arg SERVICE=<name>``):
the configuration a target resolves to for a service (ENTRYPOINT, ENV, USER... inherited along its stages, as
Docker does), the extra its build installs and that extra's dependency closure; which distribution provides a
top-level module. Shared by the Dockerfile and import checks (tests/deploy) and the cluster test (its pods run
the image's ENTRYPOINT with its ENV; it checks the modules the services imported against the extra)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SERVICES = ("prefilter", "oracle_gateway", "trainer", "inference")
PROJECT = {"distillery", "distillery_services"}  # the folder services/ installs as distillery_services


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- the Dockerfile ---------------------------------------------------------------------------------------
@dataclass
class Stage:
    name: str
    base: str  # another stage's name, or an image
    instructions: list[tuple[str, str]]  # (INSTRUCTION, rest), continuation lines joined, comments dropped


@dataclass
class ImageConfig:
    """What ``docker inspect`` would show of a built image (the parts the tests and the harness use)."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str = ""
    healthcheck: str = ""
    exposed: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)  # COPY/ADD lines of the stages it is made of


def stages(text: str | None = None) -> dict[str, Stage]:
    """Stage name -> stage, in file order; an unnamed stage is ``final:<base>``."""
    text = DOCKERFILE.read_text() if text is None else text
    out: dict[str, Stage] = {}
    current = None
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else f"final:{parts[0]}"
            current = out[name] = Stage(name, parts[0], [])
        elif current is not None:
            current.instructions.append((word.upper(), rest.strip()))
    return out


def chain(service: str, target: str = "cpu", text: str | None = None) -> list[Stage]:
    """The stages ``--build-arg SERVICE=<service> --target <target>`` is made of, the target last."""
    all_stages = stages(text)
    if target not in all_stages:
        raise KeyError(f"no stage {target!r} in {DOCKERFILE.relative_to(ROOT)}")
    out = [all_stages[target]]
    while (base := out[0].base.replace("${SERVICE}", service).replace("$SERVICE", service)) in all_stages:
        out.insert(0, all_stages[base])
    return out


def _env_pairs(body: str) -> dict[str, str]:
    return {key: value for key, sep, value in (t.partition("=") for t in shlex.split(body)) if sep}


def image_config(service: str, target: str = "cpu", text: str | None = None) -> ImageConfig:
    """The configuration of the image ``--build-arg SERVICE=<service> --target <target>`` builds. ENV values
    are kept as written (``$PATH`` unexpanded: the harness maps it to its own)."""
    img = ImageConfig()
    for stage in chain(service, target, text):
        for word, rest in stage.instructions:
            if word == "ENV":
                img.env.update(_env_pairs(rest))
            elif word in ("ENTRYPOINT", "CMD"):
                setattr(img, word.lower(), json.loads(rest))
                if word == "ENTRYPOINT":
                    img.cmd = []  # Docker resets an inherited CMD when ENTRYPOINT is set
            elif word == "WORKDIR":
                img.workdir = rest
            elif word == "USER":
                img.user = rest
            elif word == "HEALTHCHECK":
                img.healthcheck = rest
            elif word == "EXPOSE":
                img.exposed += rest.split()
            elif word == "VOLUME":
                img.volumes += json.loads(rest) if rest.startswith("[") else rest.split()
            elif word in ("COPY", "ADD"):
                img.copies.append(rest)
    return img


def install_table(text: str | None = None) -> dict[str, tuple[str, str]]:
    """Service -> (the extra its build installs, its torch build) from the build stage's ``case "$SERVICE"``."""
    build = stages(text)["build"]
    run = " ".join(rest for word, rest in build.instructions if word == "RUN" and "$SERVICE" in rest)
    return {m[0]: (m[1], m[2]) for m in re.findall(r"(\w+)\)\s+extra=(\w+)\s+torch=(\w+)", run)}


def extra_of(service: str) -> str:
    """The extra the image of ``service`` installs (``pip install ".[$extra]"`` in deploy/Dockerfile)."""
    table = install_table()
    if service not in table:
        raise AssertionError(f"{DOCKERFILE.relative_to(ROOT)}: no extra for SERVICE={service} in its build stage")
    return table[service][0]


def _project_requirements(extras: frozenset[str]) -> list[Requirement]:
    """The project's own requirements for ``extras``, from pyproject.toml (what ``pip install ".[x]"`` in
    the Dockerfile reads; the installed metadata of an editable install can be older)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project.get("dependencies", [])]
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        for text in optional.get(extra, []):
            req = Requirement(text)
            if norm(req.name) == norm(project["name"]):
                reqs += _project_requirements(frozenset(req.extras))
            else:
                reqs.append(req)
    return reqs


@cache
def closure(extra: str) -> frozenset[str]:
    """Normalised names of every distribution ``pip install ".[extra]"`` installs: the project's requirements
    for that extra, then theirs (from the installed distributions' metadata), recursively."""
    seen: set[tuple[str, frozenset]] = set()
    todo = [(r.name, frozenset(r.extras)) for r in _project_requirements(frozenset({extra}))
            if r.marker is None or r.marker.evaluate({"extra": ""})]
    while todo:
        dist, extras = todo.pop()
        if (norm(dist), extras) in seen:
            continue
        seen.add((norm(dist), extras))
        try:
            reqs = md.requires(dist) or []
        except md.PackageNotFoundError:
            continue
        for text in reqs:
            req = Requirement(text)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                continue
            todo.append((req.name, frozenset(req.extras)))
    return frozenset(name for name, _ in seen)


@cache
def providers() -> dict[str, list[str]]:
    return md.packages_distributions()


def missing(modules: dict[str, str], extra: str) -> list[str]:
    """Top-level third-party modules (-> who imported them) that ``llm-distillery[extra]`` does not install."""
    installed = closure(extra)
    out = []
    for module, importer in sorted(modules.items()):
        dists = {norm(d) for d in providers().get(module, [])}
        if dists and not dists & installed:
            out.append(f"{module} from {sorted(dists)} (imported by {importer})")
    return out




def module_file(name: str) -> Path | None:
    """The source file of a project module (``distillery_services.x`` lives in ``services/x``)."""
    parts = name.split(".")
    path = ROOT.joinpath("services" if parts[0] == "distillery_services" else parts[0], *parts[1:])
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    return None


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside ``try: ... except ImportError`` or ``if TYPE_CHECKING:``."""
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.Try) and node in parent.body and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                or isinstance(h.type, ast.Tuple) and any(getattr(e, "id", "") in ("ImportError", "ModuleNotFoundError")
                                                         for e in h.type.elts)
                for h in parent.handlers):
            return True
        if isinstance(parent, ast.If) and "TYPE_CHECKING" in ast.unparse(parent.test):
            return True
        node = parent
    return False


def module_level(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Not inside a function: runs whenever the module is imported."""
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return False
    return True


def imports_of(file: Path, package: str, module_level_only: bool) -> set[str]:
    """Modules a file imports (unguarded), at module level only or anywhere (function bodies too)."""
    tree = ast.parse(file.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    out = set()
    for node in ast.walk(tree):
        if module_level_only and not module_level(node, parents):
            continue
        if isinstance(node, ast.Import) and not _guarded(node, parents):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not _guarded(node, parents):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # `from pkg import module`
    return out


AUDIT = Path(__file__).resolve().parent / "audit"  # its sitecustomize reports the project's imports


def runtime_needs(lines) -> dict[str, str]:
    """Third-party top-level modules a process loaded because the project's code imported them (the audit
    lines of ``audit/sitecustomize.py``), each with the project module that did; imports the project guards
    with ``except ImportError`` (optional) are left out."""
    needs: dict[str, str] = {}
    for line in lines:
        if not line.startswith("distillery-import-audit: "):
            continue
        module, _, caller = line.removeprefix("distillery-import-audit: ").strip().partition(" <- ")
        file = module_file(caller)
        if file is None:
            continue
        package = caller if file.name == "__init__.py" else caller.rpartition(".")[0]
        if module in {m.split(".")[0] for m in imports_of(file, package, module_level_only=False)}:
            needs.setdefault(module, caller)
    return needs
