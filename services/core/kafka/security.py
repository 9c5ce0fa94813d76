"""How every Kafka client of a process authenticates: one set of settings, two dialects.

``TOKENRELAY_KAFKA_SECURITY_PROTOCOL`` and its companions (SASL user and password,
TLS CA, client certificate and key) become librdkafka properties for the
producers, consumers and admin clients of ``services.core.kafka``, and an
``ssl.SSLContext`` plus SASL fields for Faust's aiokafka clients in the
aggregator (``services.aggregator.app``). Plain functions of the settings, so
that both dialects are unit-tested against each other.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from services.core.settings import Settings


def uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def librdkafka_security(settings: Settings) -> dict[str, str]:
    """The librdkafka properties of the settings' security (nothing for PLAINTEXT)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    out = {"security.protocol": settings.kafka_security_protocol.lower()}
    if uses_sasl(settings):
        assert settings.kafka_sasl_username is not None
        assert settings.kafka_sasl_password is not None
        out["sasl.mechanism"] = settings.kafka_sasl_mechanism
        out["sasl.username"] = settings.kafka_sasl_username
        out["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if uses_tls(settings):
        if settings.kafka_ssl_ca_file is not None:
            out["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
        if settings.kafka_ssl_cert_file is not None and settings.kafka_ssl_key_file is not None:
            out["ssl.certificate.location"] = str(settings.kafka_ssl_cert_file)
            out["ssl.key.location"] = str(settings.kafka_ssl_key_file)
        out["ssl.endpoint.identification.algorithm"] = (
            "https" if settings.kafka_ssl_check_hostname else "none"
        )
    return out


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context aiokafka dials with (None without TLS): the same CA, client
    certificate and host-name check as librdkafka's."""
    if not uses_tls(settings):
        return None
    ctx = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None
    )
    if settings.kafka_ssl_cert_file is not None and settings.kafka_ssl_key_file is not None:
        ctx.load_cert_chain(str(settings.kafka_ssl_cert_file), str(settings.kafka_ssl_key_file))
    if not settings.kafka_ssl_check_hostname:
        ctx.check_hostname = False
    return ctx


@dataclass(frozen=True)
class SaslLogin:
    mechanism: str
    username: str
    password: str


def sasl_login(settings: Settings) -> SaslLogin | None:
    if not uses_sasl(settings):
        return None
    assert settings.kafka_sasl_username is not None and settings.kafka_sasl_password is not None
    return SaslLogin(
        settings.kafka_sasl_mechanism,
        settings.kafka_sasl_username,
        settings.kafka_sasl_password.get_secret_value(),
    )
