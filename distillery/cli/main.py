"""Entry point of the ``distillery`` command.

Each area registers its commands from its own module (``distillery/cli/<area>.py`` exposing
``register(app)``), and heavy imports (torch, transformers) happen inside the commands, so that
``distillery --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from distillery.articles import InvalidArticleError
from distillery.config import ConfigError
from distillery.filters import FilterSpecError, UnknownFilterError

app = typer.Typer(
    name="distillery",
    help="Distil an expensive LLM judge into fast local students that score a live stream of articles.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)

# Modules that contribute commands; each exposes ``register(app: typer.Typer)``.
COMMAND_MODULES = ("filters", "serve", "demo", "prefilter", "oracle", "train", "score", "cascade", "stream",
                   "synthesize", "topics", "lag", "ops", "active")

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"distillery.cli.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"distillery.cli.{_name}":
            raise
        continue
    _module.register(app)

USER_ERRORS = (FilterSpecError, UnknownFilterError, ConfigError, InvalidArticleError, FileNotFoundError, ValueError)


def main() -> None:
    """Run the CLI; user errors print one clear message and exit 2 instead of a traceback."""
    try:
        app(standalone_mode=True)
    except USER_ERRORS as exc:
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
