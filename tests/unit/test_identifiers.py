"""The identifier grammar (distillery.identifiers), storage containment, and what errors may say (distillery.redact)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from distillery import identifiers as ids
from distillery.redact import public, register_secret, scrub

HOSTILE = ["", "..", ".", "a/b", "/etc/passwd", "..\\x", "a\\b", "%2e%2e", "up\x00lifting", "uplifting\n", " uplifting",
           "a" * 65, "upl\u0456fting", "\uff55\uff50", "Uplifting", "9lives", "a-b", "a.b"]


@pytest.mark.parametrize("value", HOSTILE)
def test_filter_names_refuse_everything_but_the_grammar(value):
    with pytest.raises(ids.InvalidIdentifierError, match=r"^filter\.name: "):
        ids.filter_name(value)


@pytest.mark.parametrize("value", ["uplifting", "investment_risk", "a", "a" * 64, "x9_"])
def test_filter_names_of_the_grammar_pass(value):
    assert ids.filter_name(value) == value


def test_model_versions_as_the_registry_writes_them():
    from distillery.registry import new_version_id

    fresh = new_version_id()
    assert ids.model_version(fresh) == fresh and ids.model_version("20261126T101500-3f2a9c")
    for bad in ["nope", "20261126T101500-3F2A9C", "20261126T101500-3f2a9c\n", "20261126T101500-3f2a9c/..",
                "２０261126T101500-3f2a9c", "../20261126T101500-3f2a9c"]:
        with pytest.raises(ValueError, match="version: "):
            ids.model_version(bad)


def test_job_ids_oracle_names_versions_and_refs():
    assert ids.job_id("20261126T101500-3f2a9c1e") and ids.job_id("job-1a2b") and ids.job_id("J1")
    assert ids.oracle_name("fake-openai") == "fake-openai"
    for bad in ["..", "a/b", "job\x00", "a" * 65, "-x", "j\u0456b"]:
        with pytest.raises(ValueError, match="job_id: "):
            ids.job_id(bad)
    for bad in ["Fake", "a/b", "-x", "a.b"]:
        with pytest.raises(ValueError, match="oracle: "):
            ids.oracle_name(bad)
    assert ids.filter_ref("uplifting") == ("uplifting", 0) and ids.filter_ref("uplifting/v12") == ("uplifting", 12)
    for bad in ["uplifting/", "uplifting/v0", "uplifting/v1/x", "uplifting/../x", "uplifting/v٣", "../v1"]:
        with pytest.raises(ValueError, match="^filter: "):
            ids.filter_ref(bad)
    for bad in [-1, 10_000, True, "1"]:
        with pytest.raises(ValueError, match="filter.version"):
            ids.filter_version(bad)


def test_errors_never_echo_control_characters_look_alikes_or_megabytes():
    for value in ["a" * 100_000, "x\x00y", "upl\u0456fting", "a\nb"]:
        with pytest.raises(ValueError) as err:
            ids.filter_name(value)
        assert len(str(err.value)) < 300 and value not in str(err.value)
        assert "character value" in str(err.value)


def test_contained_path_keeps_requests_inside_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "ok").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    assert ids.contained_path(root, "ok", "file") == (root / "ok" / "file").resolve()
    for parts in [("..",), ("../outside",), ("ok/../../outside",), (str(tmp_path / "outside"),), ("link", "x"),
                  ("a\x00b",)]:
        with pytest.raises(ids.OutsideRootError) as err:
            ids.contained_path(root, *parts)
        assert str(tmp_path) not in str(err.value)


def test_contained_key_for_object_stores():
    assert ids.contained_key("bucket/models", "uplifting", "v1", "x") == "bucket/models/uplifting/v1/x"
    for segments in [("..",), ("a/b",), ("",), (".",), ("a\\b",), ("a\x00",)]:
        with pytest.raises(ids.OutsideRootError):
            ids.contained_key("bucket/models", *segments)


def test_a_remote_registry_refuses_traversal_too():
    from distillery.registry import ModelRegistry

    registry = ModelRegistry("memory://registry-traversal-test")
    for name in ["../other", "a/b", "%2e%2e"]:
        with pytest.raises(ValueError, match="filter.name"):
            registry.list(name)
        with pytest.raises(ValueError, match="filter.name"):
            registry.promote(name, "20261126T101500-3f2a9c")


def test_public_text_keeps_what_and_drops_where(caplog, tmp_path):
    register_secret("s3cr3t-token-value")
    text = f"labels file {tmp_path}/x.jsonl missing; token s3cr3t-token-value; see file:///srv/a and C:\\data\\x"
    with caplog.at_level("WARNING", logger="distillery.redact"):
        out = public(text)
    assert str(tmp_path) not in out and "s3cr3t-token-value" not in out and "/srv/a" not in out
    assert "C:\\data" not in out and "labels file <path> missing" in out
    incident = out.rsplit("(incident ", 1)[1][:12]
    logged = caplog.text
    assert incident in logged and str(tmp_path) in logged and "s3cr3t-token-value" not in logged
    # what is not a location stays as it was, without an incident
    for plain in ["unknown filter 'nope'; known: uplifting", "uplifting/v1: version 3 not loaded", "a/b is no ref"]:
        assert public(plain) == plain
    assert scrub('Traceback (most recent call last):\n  File "/x.py", line 3') == "an internal error occurred"
    assert scrub("store postgresql://app:pw0rd@db:5432/x down") == "store postgresql://<secret>@db:5432/x down"


def test_the_cli_refuses_a_path_as_a_filter_with_a_clear_error(tmp_path):
    exe = shutil.which("distillery") or str(Path(sys.executable).with_name("distillery"))
    env = {**os.environ, "DISTILLERY_HOME": str(tmp_path)}
    for args in (["score", "--filter", "../../etc/uplifting", "--count", "1"],
                 ["score", "--filter", "uplifting", "--count", "1", "--job-id", "../x"],
                 ["score", "--filter", "uplifting", "--count", "1", "--oracle", "a/b", "--dry-run"]):
        proc = subprocess.run([exe, *args], check=False, capture_output=True, text=True, timeout=120, env=env,
                              cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "is not a valid" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_config_and_specs_follow_the_grammar(tmp_path):
    from distillery_services.oracle_gateway.config import OracleGatewaySettings

    from distillery.filters import FilterCatalog, FilterSpecError

    with pytest.raises(FilterSpecError, match="not a valid filter name"):
        FilterCatalog.load(Path(__file__).resolve().parents[2] / "filters", only=["../uplifting"])
    with pytest.raises(Exception, match="oracles"):
        OracleGatewaySettings.load(None, oracles={"../x": {"kind": "synthetic"}})
    with pytest.raises(Exception, match="default_oracle"):
        OracleGatewaySettings.load(None, default_oracle="a/b")
