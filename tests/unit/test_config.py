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
    cfg.write_text("demo_service:\n  batch_size: 16\n  port: 7000\nother:\n  port: 1\n")
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
