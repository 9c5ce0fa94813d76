from __future__ import annotations

import pytest

from services.core.auth import (
    Principal,
    Role,
    check_stream_token,
    derive_secret,
    make_stream_token,
    parse_api_keys,
)
from services.core.errors import ConfigError

SECRET = derive_secret("k:t:admin")


def test_parse_api_keys() -> None:
    keys = parse_api_keys("a:acme:admin, b:beta:user,")
    assert keys == {"a": Principal("acme", Role.ADMIN), "b": Principal("beta", Role.USER)}
    assert keys["a"].may_read("beta") and not keys["b"].may_read("acme")


@pytest.mark.parametrize("spec", ["", "a:acme", "a:acme:root", "a::user"])
def test_malformed_api_keys_name_the_problem(spec: str) -> None:
    with pytest.raises(ConfigError, match="TOKENRELAY_API_KEYS"):
        parse_api_keys(spec)


def test_stream_token_is_scoped_to_job_and_expires() -> None:
    token = make_stream_token(SECRET, "job-1", "acme", ttl_s=60, now=1000)
    assert check_stream_token(SECRET, token, "job-1", now=1059) == "acme"
    assert check_stream_token(SECRET, token, "job-2", now=1000) is None
    assert check_stream_token(SECRET, token, "job-1", now=1061) is None
    assert check_stream_token(derive_secret("other"), token, "job-1", now=1000) is None
    forged = token.replace(".acme.", ".evil.")
    assert check_stream_token(SECRET, forged, "job-1", now=1000) is None
    assert check_stream_token(SECRET, "garbage", "job-1", now=1000) is None
