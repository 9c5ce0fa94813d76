"""Hostile bodies for ``POST /v1/chat/completions``, which the OpenAPI fuzzing does not reach
(the route speaks OpenAI's API and is left out of ours).

Hypothesis builds bodies near the valid ones — every known parameter, each given a
value of the right type or of any other, unknown parameters, broken messages — and
JSON that is not an object at all. Whatever the body, the answer is a 200 that
finishes as OpenAI's does, or a 4xx in OpenAI's error shape naming the parameter:
never a 5xx, never a broken stream. The seed is fixed so that CI is repeatable.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from services.gateway.openai_wire import KNOWN, PASSED_ON, UNSUPPORTED
from tests.conftest import ALICE

pytestmark = pytest.mark.kafka

EXAMPLES = 150
ERROR_STATUSES = {400, 401, 404, 413, 415, 422, 429}

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
small_counts = st.one_of(st.integers(min_value=-3, max_value=12), json_values)
"""Token limits that keep a valid job short, or values of any other kind."""

roles = st.one_of(
    st.sampled_from(["system", "user", "assistant", "developer", "tool"]), json_values
)
contents = st.one_of(
    st.text(max_size=40),
    st.lists(
        st.one_of(
            st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)}),
            st.fixed_dictionaries({"type": st.just("image_url"), "image_url": json_values}),
            json_values,
        ),
        max_size=3,
    ),
    json_values,
)
messages = st.one_of(
    st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"role": roles, "content": contents},
                optional={"name": json_values, "tool_calls": json_values},
            ),
            json_values,
        ),
        max_size=4,
    ),
    json_values,
)
models = st.one_of(st.just("fake-1"), st.just("fake-1"), st.text(max_size=12), json_values)
parameters: dict[str, st.SearchStrategy[Any]] = {
    "stream": st.one_of(st.booleans(), json_values),
    "stream_options": st.one_of(
        st.fixed_dictionaries({"include_usage": st.one_of(st.booleans(), json_values)}),
        json_values,
    ),
    "max_tokens": small_counts,
    "max_completion_tokens": small_counts,
    "temperature": st.one_of(st.floats(min_value=-1, max_value=3), json_values),
    "response_format": st.one_of(
        st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "json_schema"])}),
        json_values,
    ),
    "n": st.one_of(st.just(1), json_values),
    **dict.fromkeys((*UNSUPPORTED, *PASSED_ON), json_values),
}
parameters |= dict.fromkeys(sorted(KNOWN - {"model", "messages", *parameters}), json_values)
well_formed = st.fixed_dictionaries(
    {
        "model": st.just("fake-1"),
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["system", "developer", "user", "assistant"]),
                    "content": st.text(min_size=1, max_size=40),
                }
            ),
            min_size=1,
            max_size=3,
        ),
        "stream": st.booleans(),
    },
    optional={
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "max_tokens": st.integers(min_value=1, max_value=12),
        "temperature": st.floats(min_value=0, max_value=2),
        "response_format": st.just({"type": "text"}),
        "n": st.just(1),
        "user": st.text(max_size=10),
    },
)
"""Bodies an OpenAI client sends: each must stream or answer whole."""
hostile = st.one_of(
    st.fixed_dictionaries(
        {"model": models, "messages": messages},
        optional={**parameters, "unknown_parameter": json_values},
    ),
    json_values,
)
"""Bodies near the valid ones, and JSON that is not an object at all."""


def check_answer(r: httpx.Response, body: Any, streamed: bytes, valid: bool) -> None:
    assert r.status_code < 500, (body, r.status_code, streamed[:300])
    assert r.status_code == 200 or not valid, (body, r.status_code, streamed[:300])
    if r.status_code == 200:
        if r.headers["content-type"].startswith("text/event-stream"):
            assert streamed.rstrip().endswith(b"data: [DONE]"), (body, streamed[-300:])
        else:
            answer = orjson.loads(streamed)
            assert answer["object"] == "chat.completion", answer
            assert answer["choices"][0]["finish_reason"] in ("stop", "length"), answer
        return
    assert r.status_code in ERROR_STATUSES, (body, r.status_code, streamed[:300])
    error = orjson.loads(streamed)["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error


def test_no_body_breaks_the_openai_face(stack: str) -> None:
    with httpx.Client(base_url=stack, timeout=60) as c:

        @seed(20261206)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(
            sent=st.one_of(
                st.tuples(well_formed, st.just(True)), st.tuples(hostile, st.just(False))
            )
        )
        def one(sent: tuple[Any, bool]) -> None:
            body, valid = sent
            data = json.dumps(body).encode()  # integers beyond 64 bits too
            headers = {**ALICE, "content-type": "application/json"}
            with c.stream("POST", "/v1/chat/completions", content=data, headers=headers) as r:
                check_answer(r, body, r.read(), valid)

        one()
