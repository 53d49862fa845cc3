from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic_settings import SettingsConfigDict

from distillery.config import ConfigError, ServiceSettings


class DemoSettings(ServiceSettings):
    section: ClassVar[str] = "demo_service"
    model_config = SettingsConfigDict(env_prefix="DISTILLERY_DEMO_SERVICE_", extra="forbid")
    batch_size: int = 8


def test_precedence_defaults_file_env_cli(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("demo_service:\n  batch_size: 16\n  port: 7000\nprefilter:\n  port: 1\n")
    assert DemoSettings.load().batch_size == 8
    s = DemoSettings.load(cfg)
    assert (s.batch_size, s.port) == (16, 7000)
    monkeypatch.setenv("DISTILLERY_DEMO_SERVICE_BATCH_SIZE", "32")
    assert DemoSettings.load(cfg).batch_size == 32
    assert DemoSettings.load(cfg, batch_size=64).batch_size == 64


def test_bad_values_give_a_config_error_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLERY_DEMO_SERVICE_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="port"):
        DemoSettings.load()


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        DemoSettings.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        DemoSettings.load(bad)


def test_unknown_key_in_file_is_rejected(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("demo_service:\n  batch_sise: 16\n")
    with pytest.raises(ConfigError, match="batch_sise"):
        DemoSettings.load(cfg)


def test_a_flat_file_with_a_mapping_field_is_not_taken_for_sections(tmp_path):
    """``port`` + ``oracles:`` at top level are the gateway's own fields, not a sectioned file."""
    from distillery_services.oracle_gateway.config import OracleGatewaySettings

    cfg = tmp_path / "gw.yaml"
    cfg.write_text("port: 6000\noracles:\n  local:\n    kind: openai\n    model: m\n    base_url: http://x\n")
    s = OracleGatewaySettings.load(cfg)
    assert s.port == 6000
    assert set(s.oracles) == {"local"}


def test_unknown_yaml_key_and_section_name_the_closest_valid_one(tmp_path):
    from distillery_services.inference.config import InferenceSettings

    flat = tmp_path / "flat.yaml"
    flat.write_text("kafka_bootstrp: k:9092\n")
    with pytest.raises(ConfigError, match="kafka_bootstrp.*did you mean kafka_bootstrap"):
        InferenceSettings.load(flat)
    sectioned = tmp_path / "sections.yaml"
    sectioned.write_text("inferense:\n  port: 1\ntrainer:\n  port: 2\n")
    with pytest.raises(ConfigError, match="unknown section 'inferense'.*did you mean inference"):
        InferenceSettings.load(sectioned)
    old = tmp_path / "old.yaml"
    old.write_text("inference:\n  registry_dir: /registry\n")
    with pytest.raises(ConfigError, match="registry_dir.*use registry_uri"):
        InferenceSettings.load(old)


def test_unknown_environment_variable_stops_with_the_closest_name(monkeypatch):
    from distillery_services.trainer.config import TrainerSettings

    monkeypatch.setenv("DISTILLERY_TRAINER_LABEL_STORE", "postgresql://x")
    with pytest.raises(ConfigError, match="DISTILLERY_TRAINER_LABEL_STORE.*DISTILLERY_TRAINER_LABEL_STORE_URL"):
        TrainerSettings.load()
    monkeypatch.delenv("DISTILLERY_TRAINER_LABEL_STORE")
    monkeypatch.setenv("DISTILLERY_TRAINER_KAFKA_BOOTSTRAPS", "k:9092")
    with pytest.raises(ConfigError, match="did you mean DISTILLERY_TRAINER_KAFKA_BOOTSTRAP"):
        TrainerSettings.load()


def test_shared_connection_settings_reach_every_service_and_the_service_prefix_wins(monkeypatch):
    from distillery.config import service_settings_classes

    monkeypatch.setenv("DISTILLERY_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("DISTILLERY_REGISTRY_URI", "s3://models/registry")
    monkeypatch.setenv("DISTILLERY_INFERENCE_KAFKA_BOOTSTRAP", "other:9092")
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    loaded = {name: cls.load() for name, cls in service_settings_classes().items()}
    assert {n: s.kafka_bootstrap for n, s in loaded.items()} == {
        n: "other:9092" if n == "inference" else "kafka:9092" for n in loaded}
    assert {"prefilter", "oracle_gateway", "trainer", "inference"} <= set(loaded)
    assert {s.resolved_registry() for s in loaded.values()} == {"s3://models/registry"}
    assert {s.ray_address for s in loaded.values()} == {"ray://head:10001"}


def test_kafka_security_settings_become_client_options(monkeypatch):
    from distillery_services.prefilter.config import PrefilterSettings

    monkeypatch.setenv("DISTILLERY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="kafka_sasl_mechanism, kafka_sasl_username, kafka_sasl_password"):
        PrefilterSettings.load()
    monkeypatch.setenv("DISTILLERY_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("DISTILLERY_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("DISTILLERY_KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("DISTILLERY_KAFKA_SSL_CAFILE", "/etc/ca.pem")
    options = PrefilterSettings.load().kafka_security()
    assert options == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                       "sasl_plain_username": "svc", "sasl_plain_password": "s3cret", "ssl_cafile": "/etc/ca.pem"}
    assert "s3cret" not in repr(PrefilterSettings.load())


def test_a_misspelt_nested_key_names_the_closest_field_of_its_model(tmp_path):
    from distillery_services.oracle_gateway.config import OracleGatewaySettings

    cfg = tmp_path / "gw.yaml"
    cfg.write_text("oracle_gateway:\n  oracles:\n    local:\n      kind: synthetic\n      noise_sigma: 0.1\n"
                   "      price: {input: 0, outptu: 0}\n")
    with pytest.raises(ConfigError, match=r"oracles.local.price.outptu.*did you mean output\?"):
        OracleGatewaySettings.load(cfg)
