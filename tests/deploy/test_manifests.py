"""k8s/ against the code: topics, groups, settings, probes and users agree with tokenrelay.

Rendered with ``kubectl kustomize`` per overlay; kubeconform checks the shapes
(test_kubeconform.py), these check what only the project knows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.jobs import Priority
from services.aggregator import views
from services.core.http import health_router
from services.core.settings import Settings
from services.core.topics import topic_specs
from tests.support.manifests import (
    OVERLAYS,
    config_map_env,
    kustomize,
    named,
    of_kind,
    pod_specs,
    setting_env_names,
)

HELPER_ENV = {"POD_NAME", "POD_NAMESPACE", "CLICKHOUSE_PASSWORD"}
"""Variables the manifests set only to build others from (``$(POD_NAME)``)."""


def settings_of(overlay: str) -> Settings:
    """The settings a tokenrelay pod of this overlay runs with (its ConfigMap)."""
    env = config_map_env(kustomize(overlay))
    return Settings(
        topic_prefix=env["TOKENRELAY_TOPIC_PREFIX"],
        topic_partitions=int(env["TOKENRELAY_TOPIC_PARTITIONS"]),
        replication_factor=int(env["TOKENRELAY_REPLICATION_FACTOR"]),
        worker_group=env["TOKENRELAY_WORKER_GROUP"],
        worker_grace_s=float(env["TOKENRELAY_WORKER_GRACE_S"]),
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_topic_is_declared_as_the_parts_create_it(overlay: str) -> None:
    docs = kustomize(overlay)
    declared = {
        t["spec"]["topicName"]: (
            t["spec"]["partitions"],
            t["spec"]["replicas"],
            t["spec"]["config"],
        )
        for t in of_kind(docs, "KafkaTopic")
    }
    expected = {
        s.name: (s.partitions, s.replication_factor, {k: str(v) for k, v in s.config.items()})
        for s in topic_specs(settings_of(overlay))
    }
    as_strings = {n: (p, r, {k: str(v) for k, v in c.items()}) for n, (p, r, c) in declared.items()}
    assert as_strings == expected
    kafka = named(docs, "Kafka", "tokenrelay")["spec"]["kafka"]["config"]
    replicas = settings_of(overlay).replication_factor
    assert kafka["default.replication.factor"] == replicas
    assert kafka["min.insync.replicas"] == (2 if replicas > 1 else 1)
    assert int(kafka["message.max.bytes"]) >= int(
        expected[settings_of(overlay).topics.tokens][2]["max.message.bytes"]
    )
    pool = named(docs, "KafkaNodePool", "dual-role")["spec"]
    assert pool["replicas"] >= replicas
    if overlay == "prod":
        assert pool["replicas"] == 3 and replicas == 3, "prod: three nodes, replication 3"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_workers_on_their_groups_lag_over_every_job_topic(overlay: str) -> None:
    docs = kustomize(overlay)
    s = settings_of(overlay)
    scaled = named(docs, "ScaledObject", "tokenrelay-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "tokenrelay-worker"
    assert scaled["minReplicaCount"] >= 1, "a worker is always there: no cold start for a job"
    assert scaled["maxReplicaCount"] <= s.topic_partitions, "more would sit idle"
    triggers = [t for t in scaled["triggers"] if t["type"] == "kafka"]
    by_topic = {t["metadata"]["topic"]: t["metadata"] for t in triggers}
    assert {s.topics.jobs[p] for p in Priority} | {s.topics.retry} == set(by_topic)
    bootstrap = config_map_env(docs)["TOKENRELAY_KAFKA_BOOTSTRAP"]
    for meta in by_topic.values():
        assert meta["consumerGroup"] == s.worker_group
        assert meta["bootstrapServers"] == bootstrap
        assert int(meta["lagThreshold"]) > 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_the_manifests_set_is_a_setting(overlay: str) -> None:
    docs = kustomize(overlay)
    known = setting_env_names()
    unknown = {k for k in config_map_env(docs) if k not in known}
    for name, spec in pod_specs(docs):
        for c in spec["containers"]:
            unknown |= {
                f"{name}:{e['name']}"
                for e in c.get("env", [])
                if e["name"] not in known | HELPER_ENV
            }
    assert not unknown


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_ports_are_the_parts_own(overlay: str) -> None:
    docs = kustomize(overlay)
    env = config_map_env(docs)
    ports = {
        "tokenrelay-public": int(env["TOKENRELAY_HTTP_PORT"]),
        "tokenrelay-worker": int(env["TOKENRELAY_HTTP_PORT"]),
        "tokenrelay-aggregator": int(env["TOKENRELAY_AGGREGATOR_PORT"]),
    }
    for name, spec in pod_specs(docs):
        (c,) = spec["containers"]
        assert [p["containerPort"] for p in c["ports"]] == [ports[name]], name
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz", name
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert c[probe]["httpGet"]["port"] == "http", name
        annotations = named(
            docs, "Deployment" if name != "tokenrelay-aggregator" else "StatefulSet", name
        )["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) == ports[name]
        assert "memory" in c["resources"]["limits"] and "cpu" in c["resources"]["requests"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nothing_runs_as_root(overlay: str) -> None:
    for name, spec in pod_specs(kustomize(overlay), ours=False):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        for c in spec["containers"]:
            sc: dict[str, Any] = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_worker_pod_outlives_its_grace_and_the_aggregator_keeps_its_name(overlay: str) -> None:
    docs = kustomize(overlay)
    worker = named(docs, "Deployment", "tokenrelay-worker")["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > settings_of(overlay).worker_grace_s
    agg = named(docs, "StatefulSet", "tokenrelay-aggregator")["spec"]
    env = {e["name"]: e for e in agg["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["TOKENRELAY_AGGREGATOR_INSTANCE"]["value"] == "$(POD_NAME)"
    headless = named(docs, "Service", agg["serviceName"])["spec"]
    assert headless["clusterIP"] == "None"
    assert env["TOKENRELAY_AGGREGATOR_ADVERTISED_URL"]["value"].startswith(
        f"http://$(POD_NAME).{agg['serviceName']}.$(POD_NAMESPACE)."
    )
    assert agg["volumeClaimTemplates"][0]["metadata"]["name"] in {
        m["name"]
        for m in agg["template"]["spec"]["containers"][0]["volumeMounts"]
        if m["mountPath"] == config_map_env(docs)["TOKENRELAY_DATA_DIR"]
    }


def test_prod_takes_its_secrets_from_outside_git_and_dev_has_every_key() -> None:
    assert not of_kind(kustomize("prod"), "Secret")
    dev = named(kustomize("dev"), "Secret", "tokenrelay-secrets")
    referenced = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for _, spec in pod_specs(kustomize("dev"))
        for c in spec["containers"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
        and e["valueFrom"]["secretKeyRef"]["name"] == "tokenrelay-secrets"
    }
    assert referenced <= set(dev.get("stringData", {}))


def test_the_probed_paths_are_served() -> None:
    """The paths the probes, HEALTHCHECK and Prometheus use exist on the HTTP parts and on
    the aggregator's views."""
    served = {r.path for r in health_router([]).routes}  # type: ignore[attr-defined]
    assert {"/healthz", "/readyz", "/metrics"} <= served
    source = Path(views.__file__).read_text()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert f'@app.page("{path}")' in source, path


def test_prod_reaches_kafka_over_tls_with_the_kafkausers_login_only() -> None:
    docs = kustomize("prod")
    env = config_map_env(docs)
    s = Settings(
        kafka_security_protocol=env["TOKENRELAY_KAFKA_SECURITY_PROTOCOL"],
        kafka_sasl_mechanism=env["TOKENRELAY_KAFKA_SASL_MECHANISM"],
        kafka_sasl_username=env["TOKENRELAY_KAFKA_SASL_USERNAME"],
        kafka_sasl_password="from the Secret",
        kafka_ssl_ca_file=env["TOKENRELAY_KAFKA_SSL_CA_FILE"],
    )
    assert s.kafka_security_protocol == "SASL_SSL"
    # the only listener is the bootstrap's port, TLS, with the mechanism the parts use
    (listener,) = named(docs, "Kafka", "tokenrelay")["spec"]["kafka"]["listeners"]
    assert env["TOKENRELAY_KAFKA_BOOTSTRAP"].endswith(f":{listener['port']}") and listener["tls"]
    assert listener["authentication"]["type"] == s.kafka_sasl_mechanism.lower()
    assert named(docs, "Kafka", "tokenrelay")["spec"]["kafka"]["authorization"]["type"] == "simple"
    # the KafkaUser is the login, and Strimzi's Secrets feed every pod
    user = named(docs, "KafkaUser", s.kafka_sasl_username or "")["spec"]
    assert user["authentication"]["type"] == "scram-sha-512"
    ca_dir = str(Path(env["TOKENRELAY_KAFKA_SSL_CA_FILE"]).parent)
    for name, spec in pod_specs(docs):
        (c,) = spec["containers"]
        password = next(e for e in c["env"] if e["name"] == "TOKENRELAY_KAFKA_SASL_PASSWORD")
        assert password["valueFrom"]["secretKeyRef"] == {"name": user_name(docs), "key": "password"}
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == ca_dir)
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "tokenrelay-cluster-ca-cert", name
    # its ACLs cover what the parts touch
    acls = {
        (a["resource"]["type"], a["resource"].get("name")) for a in user["authorization"]["acls"]
    }
    base = settings_of("prod")
    assert ("topic", base.topic_prefix) in acls and ("group", base.worker_group) in acls
    assert ("transactionalId", base.topic_prefix) in acls, "workers' tokenrelay.worker.<id>"
    # KEDA reads the lag with the same login
    auth = named(docs, "TriggerAuthentication", "tokenrelay-kafka")["spec"]
    params = {r["parameter"] for r in auth["secretTargetRef"] + auth["configMapTargetRef"]}
    assert {"sasl", "tls", "username", "password", "ca"} <= params
    for trigger in named(docs, "ScaledObject", "tokenrelay-worker")["spec"]["triggers"]:
        assert trigger["authenticationRef"]["name"] == "tokenrelay-kafka"


def user_name(docs: tuple[dict[str, Any], ...]) -> str:
    (user,) = of_kind(docs, "KafkaUser")
    name: str = user["metadata"]["name"]
    return name
