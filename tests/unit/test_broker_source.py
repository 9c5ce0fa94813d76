from __future__ import annotations

from tests.support.broker import BrokerSource, choose_source


def test_env_wins_then_docker_then_local() -> None:
    env = {"TOKENRELAY_KAFKA_BOOTSTRAP": "k:9092"}
    assert choose_source(env, docker_answers=True) is BrokerSource.ENV
    assert choose_source({}, docker_answers=True) is BrokerSource.CONTAINER
    assert choose_source({}, docker_answers=False) is BrokerSource.LOCAL
    assert (
        choose_source({"TOKENRELAY_KAFKA_BOOTSTRAP": ""}, docker_answers=False)
        is BrokerSource.LOCAL
    )
