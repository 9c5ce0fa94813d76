"""The API's errors as exceptions: each carries the answer's ``{code, message, field}``."""

from __future__ import annotations

from typing import Any


class TokenrelayError(Exception):
    """An answer that was not a success, or a stream that could not be resumed."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        where = f" ({field})" if field else ""
        super().__init__(f"{status} {code}: {message}{where}")
        self.status, self.code, self.message, self.field = status, code, message, field


class NotFoundError(TokenrelayError):
    pass


class AuthenticationError(TokenrelayError):
    pass


class RateLimitError(TokenrelayError):
    pass


class UnavailableError(TokenrelayError):
    """The service could not answer now (503): Kafka or the job state is away; retry."""


class StreamGaveUpError(TokenrelayError):
    """A stream could not be resumed within the client's give-up deadline."""


class StartedOverError(TokenrelayError):
    """The job started over as a new attempt after ``tokens`` yielded text of an earlier one.

    That text is void: the job's answer is the new attempt's. ``tokens(job_id,
    last_event_id=err.last_event_id)`` goes on with the new attempt's text from its start.
    """

    def __init__(self, job_id: str, attempt: int, last_event_id: str | None) -> None:
        super().__init__(
            0,
            "started_over",
            f"job {job_id} started over as attempt {attempt}: the text so far is void",
        )
        self.job_id, self.attempt, self.last_event_id = job_id, attempt, last_event_id


def error_of(status: int, body: Any) -> TokenrelayError:
    error = body.get("error", {}) if isinstance(body, dict) else {}
    code = str(error.get("code", "error"))
    message = str(error.get("message", body if isinstance(body, str) else ""))
    field = error.get("field")
    kind = {
        404: NotFoundError,
        401: AuthenticationError,
        429: RateLimitError,
        503: UnavailableError,
    }
    return kind.get(status, TokenrelayError)(status, code, message, field)
