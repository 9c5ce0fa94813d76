"""One set of Kafka security settings, as librdkafka's clients and Faust's read it."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import faust
import pytest
from pydantic import ValidationError

from services.aggregator.app import faust_credentials
from services.core.kafka import KafkaClients
from services.core.kafka.security import librdkafka_security, ssl_context
from services.core.settings import Settings


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key (``openssl``, as an operator would make one)."""
    openssl = shutil.which("openssl")
    assert openssl is not None
    d = tmp_path_factory.mktemp("pem")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=kafka.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_plaintext_adds_nothing_and_faust_gets_no_credentials() -> None:
    s = Settings()
    assert librdkafka_security(s) == {} and faust_credentials(s) is None
    assert KafkaClients.of(s).security == {}


def test_scram_over_plaintext() -> None:
    s = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="tokenrelay",
        kafka_sasl_password="pw",
    )
    assert librdkafka_security(s) == {
        "security.protocol": "sasl_plaintext",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "tokenrelay",
        "sasl.password": "pw",
    }
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_PLAINTEXT" and creds.mechanism.value == "SCRAM-SHA-512"
    assert (creds.username, creds.password, creds.ssl_context) == ("tokenrelay", "pw", None)


def test_scram_over_tls_trusts_the_given_ca_in_both_dialects(pem: tuple[Path, Path]) -> None:
    cert, _ = pem
    s = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
        kafka_ssl_ca_file=cert,
    )
    props = librdkafka_security(s)
    assert props["security.protocol"] == "sasl_ssl" and props["sasl.mechanism"] == "SCRAM-SHA-256"
    assert props["ssl.ca.location"] == str(cert)
    assert props["ssl.endpoint.identification.algorithm"] == "https"
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials) and creds.protocol.value == "SASL_SSL"
    ctx = creds.ssl_context
    assert ctx is not None and ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert any(c["subject"] == ((("commonName", "kafka.test"),),) for c in ctx.get_ca_certs())


def test_mutual_tls_sends_the_client_certificate(pem: tuple[Path, Path]) -> None:
    cert, key = pem
    s = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=cert,
        kafka_ssl_cert_file=cert,
        kafka_ssl_key_file=key,
        kafka_ssl_check_hostname=False,
    )
    props = librdkafka_security(s)
    assert props["ssl.certificate.location"] == str(cert)
    assert props["ssl.key.location"] == str(key)
    assert props["ssl.endpoint.identification.algorithm"] == "none"
    assert "sasl.mechanism" not in props
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SSLCredentials) and creds.protocol.value == "SSL"
    ctx = ssl_context(s)
    assert ctx is not None and not ctx.check_hostname


def test_incomplete_security_settings_are_refused_at_start(pem: tuple[Path, Path]) -> None:
    with pytest.raises(ValidationError, match="TOKENRELAY_KAFKA_SASL_USERNAME"):
        Settings(kafka_security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="go together"):
        Settings(kafka_security_protocol="SSL", kafka_ssl_cert_file=pem[0])
