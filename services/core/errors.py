"""The exception tree. Every error tokenrelay raises is a ``TokenrelayError``."""

from __future__ import annotations


class TokenrelayError(Exception):
    """Root of every error raised by tokenrelay."""


class ConfigError(TokenrelayError):
    """The settings or the machine lack something; the message says what to do."""


class KafkaError(TokenrelayError):
    """A Kafka operation failed. ``code`` is librdkafka's error code when there is one."""

    def __init__(self, message: str, *, code: int | None = None, retriable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retriable = retriable


class KafkaUnavailableError(KafkaError):
    """The brokers did not answer in time."""


class DeliveryError(KafkaError):
    """A produced record was not acknowledged by the brokers."""


class ConsumeError(KafkaError):
    """The consumer reported an error for a partition or the group."""


class DecodeError(TokenrelayError):
    """A record's value is not a valid value of the schema its topic carries."""


class ApiError(TokenrelayError):
    """An error answered to an HTTP client as ``{"error": {"code", "message", "field"}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


class ClickHouseError(TokenrelayError):
    """ClickHouse (a server or the embedded chDB) refused or failed a statement.

    ``code`` is ClickHouse's error code when it gave one (164 READONLY, 62 SYNTAX_ERROR, …).
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
