"""The entry point every service shares: parse flags, load config and filters, serve until signalled.

Each ``services/<name>/__main__.py`` calls :func:`service_main` with its settings class and a function
that builds its servicers. A broken filter spec or config stops the process with the validation error
(exit code 2), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distillery import logs
from distillery.config import ConfigError, ServiceSettings
from distillery.filters import FilterCatalog, FilterSpecError
from distillery.rpc.server import GrpcServer, ServiceBinding, run_until_signalled, write_ready_file

logger = logging.getLogger(__name__)

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3  # a dependency unreachable at start, or a Kafka stage that stopped consuming


class Service:
    """What a service's ``build`` function returns: its gRPC bindings plus optional background work."""

    def __init__(
        self,
        bindings: Sequence[ServiceBinding],
        on_start: Callable[[GrpcServer], None] | None = None,
        on_stop: Callable[[], None] | None = None,
    ):
        self.bindings = list(bindings)
        self.on_start = on_start
        self.on_stop = on_stop


def common_parser(name: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"distillery serve {name}", description=description)
    p.add_argument("--config", help="YAML config file (a section per service, or this service's fields)")
    p.add_argument("--host", help="interface to bind (env DISTILLERY_<SERVICE>_HOST)")
    p.add_argument("--port", type=int, help="gRPC port, 0 for a free one")
    p.add_argument("--metrics-port", type=int, help="Prometheus /metrics port, 0 for a free one")
    p.add_argument("--filters-dir", type=Path, help="folder of filter packages")
    p.add_argument("--filter", action="append", dest="filters", help="load only this filter (repeatable)")
    p.add_argument("--state-dir", type=Path, help="folder for local state (SQLite, registry)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    p.add_argument("--ready-file", type=Path, help="write {grpc_port, metrics_port, pid} here once serving")
    return p


def service_main(
    name: str,
    settings_cls: type[ServiceSettings],
    build: Callable[[Any, FilterCatalog], Service],
    argv: Sequence[str] | None = None,
    parser: argparse.ArgumentParser | None = None,
) -> int:
    """Run one service until SIGTERM/SIGINT. ``parser`` may add service-specific flags (same dest as fields)."""
    parser = parser or common_parser(name, f"Run the {name} service")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in {"config", "ready_file"} and v is not None}
    try:
        settings = settings_cls.load(args.config, **overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(name, settings.log_level, settings.log_json)
    from distillery.bus.clients import configure_from
    from distillery.rpc.dependencies import DependencyError, wait_for_dependencies

    configure_from(settings)  # Kafka TLS/SASL and the topic policy for every client of this process
    try:
        wait_for_dependencies(settings, getattr(settings_cls, "dependencies", ()))
    except DependencyError as exc:
        print(f"error: {name} cannot start: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        catalog = FilterCatalog.load(settings.filters_dir, settings.filters or None)
    except FilterSpecError as exc:
        print(f"error: refusing to start {name}: invalid filter package\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        service = build(settings, catalog)
    except (ConfigError, FilterSpecError, ValueError) as exc:
        print(f"error: refusing to start {name}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        server = GrpcServer(name, settings, service.bindings)  # OSError: auth_required without a token
        server.start()
    except OSError as exc:
        print(f"error: {name} could not listen: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if service.on_start:
        try:
            service.on_start(server)
        except Exception as exc:  # noqa: BLE001 - e.g. Kafka unreachable or a topic missing: one line, exit 3
            print(f"error: {name} cannot start its background work: {type(exc).__name__}: {exc}", file=sys.stderr)
            server.stop(0)
            if service.on_stop:
                service.on_stop()
            return EXIT_UNAVAILABLE
    if args.ready_file:
        write_ready_file(args.ready_file, server)
    from distillery.bus.stage import failed_stages

    reason = run_until_signalled(server, service.on_stop, check=failed_stages)
    if reason:
        print(f"error: {name} stopped: {reason}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return 0
