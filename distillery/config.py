"""Typed configuration: one pydantic model per service, settable from a YAML file, the environment and CLI.

Precedence, highest first: explicit overrides (CLI flags) > environment (``DISTILLERY_<SERVICE>_<FIELD>``,
then, for the shared connection settings, ``DISTILLERY_<FIELD>``) > YAML file (``--config``, or
``DISTILLERY_CONFIG``) > defaults. A YAML file holds either one section per service (``prefilter:``,
``oracle_gateway:``, ``trainer:``, ``inference:``) or the fields of a single service at top level.

Every service shares one vocabulary for what it connects to (:data:`SHARED_FIELDS`: Kafka and its
TLS/SASL, the label store, the model registry, Redis, Ray, the bearer token), so one
``DISTILLERY_KAFKA_BOOTSTRAP`` (or ``DISTILLERY_<SERVICE>_KAFKA_BOOTSTRAP`` for one service) configures them
all. A misspelt setting never passes silently: unknown ``DISTILLERY_*`` variables and unknown YAML keys stop
the service at start with the closest valid name.
"""

from __future__ import annotations

import difflib
import importlib
import os
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from typing_extensions import Self

REPO_ROOT = Path(__file__).resolve().parent.parent

# A source checkout keeps its state and example filters at the repository root; an installed wheel has no
# repository root: its example filters ship inside the package (setup.py copies them) and its state goes to
# the current folder, like a project folder. The CLI searches ./filters first (distillery.filters.search).
_SOURCE_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file()
DEFAULT_FILTERS_DIR = next((p for p in (REPO_ROOT / "filters", REPO_ROOT / "distillery" / "_shipped_filters")
                            if p.is_dir()), REPO_ROOT / "filters")
DEFAULT_STATE_DIR = Path(os.environ.get("DISTILLERY_HOME")
                         or (REPO_ROOT / ".distillery" if _SOURCE_CHECKOUT else Path.cwd() / ".distillery"))
ENV_PREFIX = "DISTILLERY_"

# The services and where their settings live; a YAML section per service name.
SERVICE_SETTINGS = {
    "prefilter": "distillery_services.prefilter.config:PrefilterSettings",
    "oracle_gateway": "distillery_services.oracle_gateway.config:OracleGatewaySettings",
    "trainer": "distillery_services.trainer.config:TrainerSettings",
    "inference": "distillery_services.inference.config:InferenceSettings",
    "topics": "distillery.bus.provision:TopicsSettings",
    "lag_exporter": "distillery.bus.lag:LagExporterSettings",
}
# DISTILLERY_* variables that are not settings fields (read elsewhere in the code).
OTHER_VARIABLES = {
    "DISTILLERY_CONFIG": "the YAML config file",
    "DISTILLERY_HOME": "default state folder",
    "DISTILLERY_FILTERS_DIR": "filter folders of the CLI",
    "DISTILLERY_STATE_DIR": "state folder of the CLI",
    "DISTILLERY_EMBED_CACHE": "embedding cache of probe students",
    "DISTILLERY_MODEL_CACHE": "base models and encoders of students (a folder or fsspec URI; never a hub)",
    "DISTILLERY_ORIGIN_DIR": "test data",
    "DISTILLERY_ORIGIN_DATA": "benchmark data",
    "DISTILLERY_PROGRESS_SECONDS": "interval of the CLI's progress lines on a non-terminal",
    # the client library and the operator CLI (distillery.client.channel, distillery/cli/ops.py)
    "DISTILLERY_TARGET": "service address of the client library and the operator CLI",
    "DISTILLERY_TRAINER_TARGET": "trainer address of `distillery models` / `distillery jobs`",
    "DISTILLERY_INFERENCE_TARGET": "inference address of `distillery predict`",
    "DISTILLERY_ORACLE_GATEWAY_TARGET": "oracle gateway address of `distillery budgets`",
    "DISTILLERY_TOKEN": "bearer token of the client library and the operator CLI",
    "DISTILLERY_TLS_CA": "CA bundle of the client library and the operator CLI",
    "DISTILLERY_TLS_CERT": "client certificate (mutual TLS) of the client library and the operator CLI",
    "DISTILLERY_TLS_KEY": "client key (mutual TLS) of the client library and the operator CLI",
}
# Test and harness knobs, never settings.
OTHER_PREFIXES = ("DISTILLERY_TEST_",)
# Earlier names of settings, so that an old configuration gets a precise message.
RENAMED = {
    "label_store": "label_store_url",
    "registry_dir": "registry_uri",
    "registry_root": "registry_uri",
}

S = TypeVar("S", bound="ServiceSettings")


class ConfigError(ValueError):
    """Configuration that cannot be used; the message names the source and the field."""


def closest(name: str, valid) -> str:
    """' (did you mean X?)' for the closest valid name, or '' when nothing is close."""
    lowered = name.lower()
    for old, new in RENAMED.items():
        if lowered == old or lowered.endswith("_" + old):
            return f" (renamed: use {name[: len(name) - len(old)]}{new if name.islower() else new.upper()})"
    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def _closest_in(model: type, loc: tuple) -> str:
    """The closest valid name for an unknown key at ``loc``, also inside nested models (oracles.<name>.kind)."""
    import typing

    from pydantic import BaseModel

    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(str(part))
        if field is None:
            if isinstance(part, str) and model is not None:
                continue  # a mapping key such as the oracle's name: the model stays the value type
            return ""
        annotation = field.annotation
        candidates = [annotation, *typing.get_args(annotation)]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return ""
    return closest(str(loc[-1]), getattr(model, "model_fields", {})) if model is not None else ""


class _YamlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]):
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field, field_name):  # pragma: no cover - unused, __call__ does the work
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class _SharedEnvSource(PydanticBaseSettingsSource):
    """``DISTILLERY_<FIELD>`` for the shared connection settings (below the service's own prefix)."""

    def get_field_value(self, field, field_name):  # pragma: no cover - unused, __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        env = {k.upper(): v for k, v in os.environ.items()}
        return {name: env[ENV_PREFIX + name.upper()] for name in SHARED_FIELDS if ENV_PREFIX + name.upper() in env}


class ServiceSettings(BaseSettings):
    """Settings every service shares."""

    section: ClassVar[str] = "service"
    # Endpoints the service must reach before it serves (distillery.rpc.dependencies).
    dependencies: ClassVar[tuple[str, ...]] = ("kafka",)
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

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
    grpc_max_connection_age_seconds: float = Field(
        default=300.0, ge=0,
        description="Servers close each client connection after this long (with a grace for calls in flight), so "
        "clients reconnect and re-resolve: replicas added by an autoscaler get traffic. 0: connections live forever.",
    )
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
        description="When set, every call except health checks must carry 'authorization: Bearer <token>'. This "
        "token holds every role (scoring, labelling, admin); prefer the per-role tokens below. Comma-separate "
        "several tokens while rotating.",
    )
    auth_scoring_token: SecretStr | None = Field(
        default=None, description="Token(s) of scoring clients: Score*, Check* and read-only calls (Get/List/Watch).")
    auth_labelling_token: SecretStr | None = Field(
        default=None, description="Token(s) of labelling clients: OracleService Label/LabelStream and read-only calls.")
    auth_admin_token: SecretStr | None = Field(
        default=None, description="Token(s) of operators: every method, including StartJob, CancelJob, Promote, "
        "Rollback and budget changes (which no other role may call).")
    reflection: bool = Field(
        default=True, description="Serve gRPC server reflection (grpcurl, Postman); with auth on it needs a valid "
        "token. Turn off to hide the API surface.")
    auth_required: bool = Field(
        default=False, description="Refuse to start without any auth token (the chart sets it with auth mode "
        "token, so that a Secret missing its keys never leaves a service open).")
    startup_retry_seconds: float = Field(
        default=60.0, ge=0,
        description="How long a service retries an unreachable broker, database, Redis or object store at start "
        "before it exits non-zero (naming the endpoint).",
    )

    # -- what every service connects to (shared vocabulary; also settable as DISTILLERY_<FIELD>) ------------------
    kafka_bootstrap: str = Field(
        default="", description="Kafka bootstrap servers (host:port,...); empty: no Kafka stage / events."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How clients talk to the brokers; managed Kafka usually needs SASL_SSL."
    )
    kafka_sasl_mechanism: Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="", description="SASL mechanism for SASL_PLAINTEXT/SASL_SSL."
    )
    kafka_sasl_username: str = Field(default="", description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password (from a Secret).")
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="PEM CA bundle that signed the brokers' certificates (default: system CAs)."
    )
    kafka_ssl_certfile: Path | None = Field(default=None, description="PEM client certificate (mutual TLS).")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="PEM private key of kafka_ssl_certfile.")
    kafka_create_topics: bool = Field(
        default=True, description="Create the service's missing topics at start (development). False (the chart, "
        "where `distillery topics ensure` provisions them): a missing topic stops the service with its name."
    )
    label_store_url: str = Field(
        default="", description="Label store (oracle gateway, trainer): path, sqlite:///path or postgresql://...; "
        "empty: <state_dir>/labels.sqlite. Several replicas need PostgreSQL."
    )
    registry_uri: str = Field(
        default="", description="Model registry (trainer writes, inference reads): a folder or an fsspec URI such "
        "as s3://bucket/prefix; empty: <state_dir>/registry. S3 endpoint and credentials come from the AWS SDK's "
        "variables (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION)."
    )
    redis_url: str = Field(
        default="", description="Redis (oracle gateway): rate limits and budgets shared across replicas."
    )
    ray_address: str = Field(
        default_factory=lambda: os.environ.get("RAY_ADDRESS", ""),
        description="Ray cluster of training jobs (ray://head:10001 or auto); empty: a local Ray. RAY_ADDRESS "
        "is the default.",
    )

    _yaml_data: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Self:
        if self.kafka_security_protocol.startswith("SASL_"):
            missing = [name for name, value in (("kafka_sasl_mechanism", self.kafka_sasl_mechanism),
                                                ("kafka_sasl_username", self.kafka_sasl_username),
                                                ("kafka_sasl_password", self.kafka_sasl_password)) if not value]
            if missing:
                raise ValueError(f"kafka_security_protocol {self.kafka_security_protocol} needs "
                                 f"{', '.join(missing)}")
        elif self.kafka_sasl_mechanism:
            raise ValueError(f"kafka_sasl_mechanism is set but kafka_security_protocol is "
                             f"{self.kafka_security_protocol}; use SASL_SSL (or SASL_PLAINTEXT)")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("kafka_ssl_certfile and kafka_ssl_keyfile go together (client certificate and key)")
        return self

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return (init_settings, env_settings, _SharedEnvSource(settings_cls),
                _YamlSource(settings_cls, cls._yaml_data), file_secret_settings)

    @classmethod
    def load(cls, config_file: Path | str | None = None, **overrides: Any) -> Self:
        """Build settings from file, environment and overrides; raise ConfigError with a usable message."""
        check_environment(cls)
        config_file = config_file or os.environ.get("DISTILLERY_CONFIG")
        data: dict[str, Any] = {}
        if config_file:
            data = cls._section_of(Path(config_file))
        overrides = {k: v for k, v in overrides.items() if v is not None}
        # A subclass attribute keeps concurrent loads of different services apart.
        holder = type(cls.__name__, (cls,), {"_yaml_data": data, "section": cls.section})
        try:
            settings = holder(**overrides)
        except ValidationError as exc:
            raise ConfigError(cls._describe(exc, config_file)) from None
        return cls.model_validate(settings.model_dump())

    @classmethod
    def _section_of(cls, path: Path) -> dict[str, Any]:
        """This service's mapping from a YAML file: its section of a sectioned file, or the whole flat file.

        A file is sectioned when its top-level keys are service names; a top-level mapping that is a field
        (``oracles:``, ``pricing:``) does not make it one.
        """
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping")
        sections = {*SERVICE_SETTINGS, cls.section}
        keys = {str(k) for k in raw}
        if not keys & sections:
            return raw  # the fields of one service; unknown ones are refused by validation
        for key in sorted(keys - sections):
            hint = " (a field of a service belongs under its section)" if key in cls.model_fields else ""
            raise ConfigError(f"config file {path}: unknown section {key!r}{closest(key, sections) or hint}; "
                              f"sections are {', '.join(sorted(sections))}")
        section = raw.get(cls.section) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"config file {path}: section {cls.section!r} must hold a mapping")
        return section

    @classmethod
    def _describe(cls, exc: ValidationError, config_file) -> str:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                source = f"config file {config_file}" if config_file else "settings"
                problems.append(f"unknown setting {where!r} in {source}{_closest_in(cls, e['loc'])}")
            else:
                problems.append(f"{where}: {e['msg']}")
        prefix = cls.model_config.get("env_prefix", "")
        return f"invalid {cls.section} settings ({'; '.join(problems)}); env prefix {prefix}"

    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def kafka_security(self) -> dict[str, Any]:
        """kafka-python client options for the configured security (empty for PLAINTEXT)."""
        options: dict[str, Any] = {}
        if self.kafka_security_protocol != "PLAINTEXT":
            options["security_protocol"] = self.kafka_security_protocol
        if self.kafka_security_protocol.startswith("SASL_"):
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = (self.kafka_sasl_password.get_secret_value()
                                              if self.kafka_sasl_password else "")
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            for option, value in (("ssl_cafile", self.kafka_ssl_cafile), ("ssl_certfile", self.kafka_ssl_certfile),
                                  ("ssl_keyfile", self.kafka_ssl_keyfile)):
                if value:
                    options[option] = str(value)
        return options

    def resolved_label_store(self) -> str:
        return self.label_store_url or str(Path(self.state_dir) / "labels.sqlite")

    def resolved_registry(self) -> str:
        return self.registry_uri or str(Path(self.state_dir) / "registry")


SHARED_FIELDS = (
    "kafka_bootstrap", "kafka_security_protocol", "kafka_sasl_mechanism", "kafka_sasl_username",
    "kafka_sasl_password", "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", "kafka_create_topics", "label_store_url",
    "registry_uri", "redis_url", "ray_address", "auth_token", "auth_scoring_token", "auth_labelling_token",
    "auth_admin_token", "reflection", "auth_required", "log_level", "log_json",
    "startup_retry_seconds", "grpc_max_connection_age_seconds",
)


def service_settings_classes() -> dict[str, type[ServiceSettings]]:
    """The four services' settings classes by section name."""
    out = {}
    for section, target in SERVICE_SETTINGS.items():
        module, _, name = target.partition(":")
        out[section] = getattr(importlib.import_module(module), name)
    return out


def valid_variables(extra: type[ServiceSettings] | None = None) -> set[str]:
    """Every DISTILLERY_* variable a service reads (any service's, so one environment may serve all four)."""
    classes = list(service_settings_classes().values()) + ([extra] if extra is not None else [])
    names = {ENV_PREFIX + f.upper() for f in SHARED_FIELDS} | set(OTHER_VARIABLES)
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        names |= {prefix + f.upper() for f in cls.model_fields}
    return names


def check_environment(cls: type[ServiceSettings] | None = None, environ: dict[str, str] | None = None) -> None:
    """Refuse unknown DISTILLERY_* variables (a misspelt one would otherwise be ignored silently)."""
    environ = os.environ if environ is None else environ
    ours = [k for k in environ if k.upper().startswith(ENV_PREFIX) and not k.upper().startswith(OTHER_PREFIXES)]
    if not ours:
        return
    valid = valid_variables(cls)
    unknown = sorted(k for k in ours if k.upper() not in valid)
    if unknown:
        raise ConfigError("unknown environment variable" + ("s " if len(unknown) > 1 else " ") + "; ".join(
            f"{name}{closest(name.upper(), valid)}" for name in unknown))
