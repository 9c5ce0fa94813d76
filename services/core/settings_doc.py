"""``docs/configuration.md``, written from the settings classes (``make docs``).

Every variable, its default and its meaning come from ``services.core.settings``
(a field's ``description``; a machine-dependent default from its ``doc_default``),
so the page cannot drift from the code: ``tests/unit/test_configuration_doc.py``
fails when the file is not what this module writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from services.core.settings import GROUPS, env_name

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
HEADER = """# Configuration

Every part reads the same environment variables, once, at start
(`services/core/settings.py`); this page is generated from that module by
`make docs` (`python -m services.core.settings_doc`), and a test fails when it
is stale. Variables are grouped by the part they configure; a process ignores
the ones of parts it does not run. A variable set to the empty string counts as
unset: the setting keeps its default.

Tracing reads OpenTelemetry's own variables: `OTEL_EXPORTER_OTLP_ENDPOINT` turns
it on (spans exported over OTLP/HTTP), `OTEL_SERVICE_NAME` names the process
(default `tokenrelay-<its parts>`), `OTEL_BSP_*` tune the batching
(`services/core/tracing.py`).
"""


def _default(info: FieldInfo) -> str:
    extra = info.json_schema_extra
    if isinstance(extra, dict) and "doc_default" in extra:
        return str(extra["doc_default"])
    if info.default_factory is not None:
        return str(info.default_factory())  # type: ignore[call-arg]
    value: Any = info.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)


def markdown() -> str:
    parts = [HEADER]
    for group in GROUPS:
        title = group.__name__.removesuffix("Settings").replace("Http", "HTTP")
        about = (group.__doc__ or "").strip().replace("``", "`")
        parts.append(f"\n## {title}\n\n{about}\n")
        parts.append("\n| variable | default | meaning |\n|---|---|---|\n")
        for name, info in group.model_fields.items():
            meaning = (info.description or "").replace("|", "\\|")
            parts.append(f"| `{env_name(name)}` | `{_default(info)}` | {meaning} |\n")
    return "".join(parts)


def main() -> None:
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(markdown())
    sys.stdout.write(f"wrote {DOC}\n")


if __name__ == "__main__":
    main()
