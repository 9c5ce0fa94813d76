"""The deployment files as data: kustomize's output per overlay, compose's resolved file."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices

from services.core import tracing
from services.core.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "prod")


@cache
def kustomize(overlay: str) -> tuple[dict[str, Any], ...]:
    """Every resource ``kubectl kustomize k8s/overlays/<overlay>`` renders."""
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl is needed to render k8s/ (it ships with the machine)"
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    return found


def pod_specs(
    docs: tuple[dict[str, Any], ...], *, ours: bool = True
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) of every Deployment and StatefulSet (of tokenrelay's image
    only, unless ``ours`` is False: ClickHouse's too)."""
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        if ours and d["metadata"]["labels"].get("app.kubernetes.io/name") != "tokenrelay":
            continue
        yield d["metadata"]["name"], d["spec"]["template"]["spec"]


def setting_env_names() -> set[str]:
    """Every environment variable a part reads: ``Settings``' (prefixed names and aliases)
    and OpenTelemetry's that turn tracing on."""
    names = set(tracing.VARIABLES)
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(a) for a in alias.choices}
        else:
            names.add(f"{ENV_PREFIX}{field.upper()}")
    return names


def config_map_env(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    return dict(named(docs, "ConfigMap", "tokenrelay-config")["data"])
