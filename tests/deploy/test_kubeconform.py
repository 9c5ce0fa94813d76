"""Every resource of each overlay is valid, strictly, for Kubernetes and for its operator.

``kubectl kustomize`` renders the overlay; kubeconform checks each resource against
the core kinds' schemas and the CRDs' schemas generated from the operators' own
artifacts (tests/support/deploy_tools.py): an unknown or misspelt field fails.
"""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest
import yaml

from tests.support.deploy_tools import (
    KUBERNETES_VERSION,
    core_location,
    crd_location,
    kubeconform,
)
from tests.support.manifests import OVERLAYS, kustomize, named


def validate(docs: list[dict[str, Any]]) -> dict[str, Any]:
    out = subprocess.run(
        [
            str(kubeconform()),
            "-strict",
            "-summary",
            "-output",
            "json",
            "-kubernetes-version",
            KUBERNETES_VERSION,
            "-schema-location",
            core_location(),
            "-schema-location",
            crd_location(),
            "-",
        ],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report: dict[str, Any] = json.loads(out.stdout)
    report["returncode"] = out.returncode
    return report


def problems(report: dict[str, Any]) -> list[str]:
    return [
        f"{r['kind']} {r['name']}: {r['status']} {r.get('msg', '')}"
        for r in report.get("resources", [])
        if r["status"] != "statusValid"
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_is_valid(overlay: str) -> None:
    docs = list(kustomize(overlay))
    report = validate(docs)
    assert problems(report) == [] and report["returncode"] == 0
    summary = report["summary"]
    assert summary["valid"] == len(docs) and summary["skipped"] == 0


@pytest.mark.parametrize(
    ("kind", "name", "path"),
    [
        ("Deployment", "tokenrelay-worker", ["spec", "template", "spec", "containers", 0]),
        ("Kafka", "tokenrelay", ["spec", "kafka"]),
        ("KafkaTopic", "tokenrelay-tokens", ["spec"]),
        ("ScaledObject", "tokenrelay-worker", ["spec"]),
        ("StatefulSet", "clickhouse", ["spec"]),
    ],
)
def test_a_misspelt_field_is_caught(kind: str, name: str, path: list[str | int]) -> None:
    """The schemas are strict for every kind we use, operators' included."""
    doc = copy.deepcopy(named(kustomize("prod"), kind, name))
    node: Any = doc
    for step in path:
        node = node[step]
    node["replicaz"] = 3
    report = validate([doc])
    (bad,) = problems(report)
    assert "replicaz" in bad and report["returncode"] == 1
