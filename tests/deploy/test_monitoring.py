"""The Grafana dashboard and Prometheus config ask for metrics and targets that exist."""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client import REGISTRY

import services.core.metrics  # noqa: F401 - registers every tokenrelay metric
from tests.support.manifests import ROOT

SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def exported_samples() -> set[str]:
    """Every sample name the processes expose (``_total`` of a counter, ``_bucket`` …)."""
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("tokenrelay_"):
            names.add(family.name)
            names |= {family.name + s for s in SUFFIXES}
    return names


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/tokenrelay.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {m for e in exprs for m in re.findall(r"tokenrelay_[a-z_]+", e)}
    assert asked, "the dashboard queries tokenrelay's metrics"
    assert asked <= exported_samples(), asked - exported_samples()
    assert dashboard["uid"] == "tokenrelay"
    assert all(p["datasource"]["uid"] == "prometheus" for p in dashboard["panels"])


def test_grafana_is_provisioned_with_that_datasource_and_folder() -> None:
    prov = ROOT / "deploy/grafana/provisioning"
    (source,) = yaml.safe_load((prov / "datasources/prometheus.yml").read_text())["datasources"]
    assert source["uid"] == "prometheus" and source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((prov / "dashboards/tokenrelay.yml").read_text())["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_prometheus_scrapes_every_tokenrelay_service_of_compose() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets |= set(static["targets"])
        for sd in job.get("dns_sd_configs", []):
            targets |= {f"{n}:{sd['port']}" for n in sd["names"]}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    ours = {n for n, s in compose.items() if "command" in s and s.get("build") == "."}
    ports = {n: 6066 if compose[n]["command"] == ["aggregator"] else 8000 for n in ours}
    assert {f"{n}:{p}" for n, p in ports.items()} == targets
