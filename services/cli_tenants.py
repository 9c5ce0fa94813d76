"""``tokenrelay tenants`` and ``tokenrelay keys``: tenants' policies, usage and run-time keys.

``tenants list`` and ``tenants set TENANT --weight … --rpm …`` (admin),
``tenants usage [TENANT]`` (a user: its own tenant), ``keys create --tenant T
[--role admin|user]`` (the key is printed once), ``keys list``, ``keys revoke
ID``. Every command takes ``--url``, ``--api-key`` and ``--json``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.cli_client import (
    JsonOption,
    KeyOption,
    UrlOption,
    answer,
    api_client,
    print_json,
    report,
)

tenants_app = typer.Typer(help="Tenants: policies, limits and usage.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys made at run time (admin).", no_args_is_help=True)

LIMITS = (
    "weight",
    "max_concurrency",
    "rpm",
    "tokens_per_day",
    "budget_usd_per_day",
    "budget_usd_per_month",
)


def _figure(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def usage_rows(usage: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(what, spent, limit, remaining)`` for each of a tenant's spend figures."""
    spent, limits, left = usage["spent"], usage["limits"], usage["remaining"]
    rows = [
        ("USD today", spent["usd_day"], limits["budget_usd_per_day"], left["usd_day"]),
        ("USD this month", spent["usd_month"], limits["budget_usd_per_month"], left["usd_month"]),
        ("tokens today", spent["tokens_day"], limits["tokens_per_day"], left["tokens_day"]),
    ]
    return [(name, _figure(s), _figure(limit), _figure(r)) for name, s, limit, r in rows]


@tenants_app.command("list")
def list_tenants(
    as_json: JsonOption = False, url: UrlOption = None, api_key: KeyOption = None
) -> None:
    """Every tenant with a policy, and its limits (admin)."""
    with api_client(url, api_key) as client:
        found = answer(client.get("/v1/admin/tenants"))
    if as_json:
        print_json(found)
        return
    table = Table(title=f"{len(found['tenants'])} tenants with a policy")
    table.add_column("tenant")
    for name in LIMITS:
        table.add_column(name.replace("_", " "))
    for t in found["tenants"]:
        table.add_row(t["tenant"], *(_figure(t[name]) for name in LIMITS))
    Console().print(table)


@tenants_app.command("set")
def set_tenant(
    tenant: Annotated[str, typer.Argument()],
    weight: Annotated[float, typer.Option(help="share of the workers against others")] = 1.0,
    max_concurrency: Annotated[int | None, typer.Option(help="jobs running at once")] = None,
    rpm: Annotated[int | None, typer.Option(help="jobs submitted per minute")] = None,
    tokens_per_day: Annotated[int | None, typer.Option()] = None,
    budget_usd_per_day: Annotated[float | None, typer.Option()] = None,
    budget_usd_per_month: Annotated[float | None, typer.Option()] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Set a tenant's whole policy (a limit left out is no limit) (admin)."""
    body = {
        "weight": weight,
        "max_concurrency": max_concurrency,
        "rpm": rpm,
        "tokens_per_day": tokens_per_day,
        "budget_usd_per_day": budget_usd_per_day,
        "budget_usd_per_month": budget_usd_per_month,
    }
    with api_client(url, api_key) as client:
        policy = answer(client.put(f"/v1/admin/tenants/{tenant}", json=body))
    limits = ", ".join(f"{k} {_figure(policy[k])}" for k in LIMITS if policy[k] is not None)
    report(policy, as_json, f"tenant {tenant}: {limits}")


@tenants_app.command("usage")
def tenant_usage(
    tenant: Annotated[str | None, typer.Argument(help="default: the key's own tenant")] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """A tenant's spend today and this month against its limits."""
    with api_client(url, api_key) as client:
        name = tenant or answer(client.get("/v1/me"))["tenant"]
        usage = answer(client.get(f"/v1/tenants/{name}/usage"))
    if as_json:
        print_json(usage)
        return
    table = Table(title=f"{name}: usage on {usage['day']} (UTC)")
    for column in ("", "spent", "limit", "remaining"):
        table.add_column(column)
    for row in usage_rows(usage):
        table.add_row(*row)
    Console().print(table)
    Console(stderr=True).print(
        f"the day resets at {usage['day_resets_at']}, the month at {usage['month_resets_at']}"
    )


@keys_app.command("create")
def create_key(
    tenant: Annotated[str, typer.Option(help="the tenant the key acts for")],
    role: Annotated[str, typer.Option(help="user or admin")] = "user",
    name: Annotated[str | None, typer.Option(help="what the key is for")] = None,
    rpm: Annotated[int | None, typer.Option(help="jobs it may submit per minute")] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Make a key; it is printed this once (stdout), and stored only as its SHA-256."""
    with api_client(url, api_key) as client:
        body = {"tenant": tenant, "role": role, "name": name, "rpm": rpm}
        made = answer(client.post("/v1/admin/keys", json=body), ok=(201,))
    if as_json:
        print_json(made)
        return
    Console(stderr=True).print(
        f"key {made['id']} for {tenant} ({role}); keep it, it is shown once:"
    )
    typer.echo(made["key"])


@keys_app.command("list")
def list_keys(
    as_json: JsonOption = False, url: UrlOption = None, api_key: KeyOption = None
) -> None:
    """The run-time keys: ids, tenants and roles, never the keys."""
    with api_client(url, api_key) as client:
        found = answer(client.get("/v1/admin/keys"))
    if as_json:
        print_json(found)
        return
    table = Table(title=f"{len(found['keys'])} run-time keys")
    for column in ("id", "tenant", "role", "name", "by"):
        table.add_column(column)
    for k in found["keys"]:
        table.add_row(k["id"], k["tenant"], k["role"], k["name"] or "", k["by"])
    Console().print(table)


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument()],
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Revoke a key: every process refuses it within about a second."""
    with api_client(url, api_key) as client:
        r = client.delete(f"/v1/admin/keys/{key_id}")
        if r.status_code != 204:
            answer(r)
    Console(stderr=True).print(f"key {key_id} revoked")
