"""Kafka TLS/SASL settings reach every kafka-python client the process makes (producers, consumers, admin)."""

from __future__ import annotations

import pytest

from distillery.bus import clients
from distillery.bus.broker import free_port


@pytest.fixture
def sasl_ssl(monkeypatch, tmp_path):
    from distillery_services.prefilter.config import PrefilterSettings

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    for name, value in {"DISTILLERY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                        "DISTILLERY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                        "DISTILLERY_KAFKA_SASL_USERNAME": "distillery",
                        "DISTILLERY_KAFKA_SASL_PASSWORD": "not-a-real-password",
                        "DISTILLERY_KAFKA_SSL_CAFILE": str(ca)}.items():
        monkeypatch.setenv(name, value)
    clients.configure_from(PrefilterSettings.load())
    yield ca
    clients.configure()


def test_producer_and_consumer_get_the_security_settings(sasl_ssl):
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens: the clients are only built, not used
    producer = clients.make_producer(bootstrap, api_version=(2, 8))
    consumer = clients.make_consumer(bootstrap, "g", api_version=(2, 8))
    try:
        for config in (producer.config, consumer.config):
            assert config["security_protocol"] == "SASL_SSL"
            assert config["sasl_mechanism"] == "SCRAM-SHA-512"
            assert config["sasl_plain_username"] == "distillery"
            assert config["sasl_plain_password"] == "not-a-real-password"
            assert config["ssl_cafile"] == str(sasl_ssl)
    finally:
        producer.close(timeout=1)
        consumer.close()


def test_plaintext_is_the_default_and_adds_nothing():
    from distillery_services.prefilter.config import PrefilterSettings

    clients.configure_from(PrefilterSettings.load())
    assert clients.security_options() == {}
