"""A CustomResourceDefinition's schemas as kubeconform reads them, strict.

For each served version with an ``openAPIV3Schema`` it writes
``<out>/<group>/<kind lowercase>_<version>.json`` — the layout of the template
``{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json`` — made strict
as kubeconform's own ``openapi2jsonschema`` does in strict mode:

* ``additionalProperties: false`` on every object schema that lists ``properties``
  in a structural position (the root, a property, ``items``,
  ``additionalProperties``), unless it keeps unknown fields
  (``x-kubernetes-preserve-unknown-fields``). Branches of ``oneOf``/``anyOf``/
  ``allOf``/``not`` only constrain (Strimzi's ``oneOf`` of ``required`` lists):
  closing them would refuse valid resources.
* ``x-kubernetes-int-or-string`` becomes a string or an integer; ``nullable``
  adds ``null`` to the type.
* ``apiVersion`` and ``kind`` must be this group/version and kind; ``metadata``
  is an object.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

COMBINATORS = ("oneOf", "anyOf", "allOf")


def _int_or_string(node: dict[str, Any]) -> None:
    if not node.get("x-kubernetes-int-or-string"):
        return
    node.pop("type", None)
    choices = node.get("anyOf")
    if isinstance(choices, list) and all(
        isinstance(c, dict) and set(c) == {"type"} and c["type"] in ("integer", "string")
        for c in choices
    ):
        node.pop("anyOf")
    either = [{"type": "string"}, {"type": "integer"}]
    if "oneOf" in node:
        node.setdefault("allOf", []).append({"oneOf": either})
    else:
        node["oneOf"] = either


def _nullable(node: dict[str, Any]) -> None:
    if node.pop("nullable", False) and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]


def _walk(node: Any, structural: bool) -> None:
    if not isinstance(node, dict):
        return
    _int_or_string(node)
    _nullable(node)
    if (
        structural
        and "properties" in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in node
    ):
        node["additionalProperties"] = False
    for child in (node.get("properties") or {}).values():
        _walk(child, structural)
    items = node.get("items")
    for item in items if isinstance(items, list) else [items]:
        _walk(item, structural)
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], structural)
    for key in COMBINATORS:
        for branch in node.get(key) or []:
            _walk(branch, False)
    _walk(node.get("not"), False)


def strict_schema(group: str, kind: str, version: str, schema: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(schema)
    out["type"] = "object"
    props = out.setdefault("properties", {})
    props["apiVersion"] = {
        **(props.get("apiVersion") or {}),
        "type": "string",
        "enum": [f"{group}/{version}"],
    }
    props["kind"] = {**(props.get("kind") or {}), "type": "string", "enum": [kind]}
    props.setdefault("metadata", {"type": "object"})
    _walk(out, True)
    return out


def write_schemas(crd_file: Path, out: Path) -> list[Path]:
    """The strict schema of every served version of every CRD in ``crd_file``."""
    written = []
    for crd in yaml.safe_load_all(crd_file.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        for version in spec["versions"]:
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if not version.get("served", True) or not schema:
                continue
            path = out / group / f"{kind.lower()}_{version['name']}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(strict_schema(group, kind, version["name"], schema)))
            written.append(path)
    return written
