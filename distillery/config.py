"""Typed configuration: one pydantic model per service, settable from a YAML file, the environment and CLI.

Precedence, highest first: explicit overrides (CLI flags) > environment (``DISTILLERY_<SERVICE>_<FIELD>``)
> YAML file (``--config``, or ``DISTILLERY_CONFIG``) > defaults. A YAML file may hold one section per
service (``prefilter:``, ``oracle_gateway:`` ...) or the fields of a single service at top level.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from typing_extensions import Self

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILTERS_DIR = REPO_ROOT / "filters"
DEFAULT_STATE_DIR = Path(os.environ.get("DISTILLERY_HOME", REPO_ROOT / ".distillery"))

S = TypeVar("S", bound="ServiceSettings")


class ConfigError(ValueError):
    """Configuration that cannot be used; the message names the source and the field."""


class _YamlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]):
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field, field_name):  # pragma: no cover - unused, __call__ does the work
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class ServiceSettings(BaseSettings):
    """Settings every service shares."""

    section: ClassVar[str] = "service"
    model_config = SettingsConfigDict(env_prefix="DISTILLERY_", extra="forbid", validate_default=True)

    host: str = Field(default="127.0.0.1", description="Interface the gRPC server binds (0.0.0.0 in containers).")
    port: int = Field(default=50051, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(default=9100, ge=0, le=65535, description="Prometheus /metrics port (0: free one).")
    filters_dir: Path = Field(default=DEFAULT_FILTERS_DIR, description="Folder of filter packages.")
    filters: list[str] = Field(
        default_factory=list, description="Filters to load (name or name/vN); empty loads every package."
    )
    state_dir: Path = Field(default=DEFAULT_STATE_DIR, description="Where local state (SQLite, registry) lives.")
    max_text_bytes: int = Field(default=1_000_000, gt=0, description="Reject articles whose text is larger.")
    max_message_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0, description="gRPC max message size; bounds one batch request."
    )
    workers: int = Field(default=8, ge=1, description="gRPC handler threads.")
    shutdown_grace_seconds: float = Field(default=5.0, ge=0, description="Time in-flight RPCs get on SIGTERM.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_json: bool = Field(default=True, description="Structured JSON logs (one object per line).")
    tls_cert_file: Path | None = Field(
        default=None, description="PEM server certificate chain; with tls_key_file, gRPC is served over TLS."
    )
    tls_key_file: Path | None = Field(default=None, description="PEM private key of tls_cert_file.")
    tls_client_ca_file: Path | None = Field(
        default=None, description="PEM CA bundle: when set, clients must present a certificate it signed (mTLS)."
    )
    auth_token: SecretStr | None = Field(
        default=None,
        description="When set, every call except health checks must carry 'authorization: Bearer <token>'.",
    )

    _yaml_data: ClassVar[dict[str, Any]] = {}

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return (init_settings, env_settings, _YamlSource(settings_cls, cls._yaml_data), file_secret_settings)

    @classmethod
    def load(cls, config_file: Path | str | None = None, **overrides: Any) -> Self:
        """Build settings from file, environment and overrides; raise ConfigError with a usable message."""
        config_file = config_file or os.environ.get("DISTILLERY_CONFIG")
        data: dict[str, Any] = {}
        if config_file:
            path = Path(config_file)
            try:
                raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except FileNotFoundError:
                raise ConfigError(f"config file {path} does not exist") from None
            except yaml.YAMLError as exc:
                raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
            if not isinstance(raw, dict):
                raise ConfigError(f"config file {path} must hold a mapping")
            data = raw.get(cls.section, raw if not any(isinstance(v, dict) for v in raw.values()) else {})
        overrides = {k: v for k, v in overrides.items() if v is not None}
        # A subclass attribute keeps concurrent loads of different services apart.
        holder = type(cls.__name__, (cls,), {"_yaml_data": data, "section": cls.section})
        try:
            settings = holder(**overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            prefix = cls.model_config.get("env_prefix", "")
            raise ConfigError(f"invalid {cls.section} settings ({problems}); env prefix {prefix}") from None
        return cls.model_validate(settings.model_dump())

    def address(self) -> str:
        return f"{self.host}:{self.port}"
