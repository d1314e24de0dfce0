"""``skiff devices``: one Keycloak client per device, so one device can be cut off alone.

The fleet's shared client (``DEVICE_CLIENT_ID``, ``bracelet-devices``) suits a
pilot; a device that is lost or misbehaves would force a new secret on every
device. ``skiff devices add NAME`` makes the client ``device-NAME``, a copy of the
shared client's definition in the realm file (client credentials, the
``model-api`` audience, no login pages), and prints its secret once;
``skiff devices revoke NAME`` disables it. Keycloak then refuses that client new
tokens; a token it already holds keeps working until it expires (the realm's
access token lifespan, 300 s), as the model server verifies tokens offline.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from skiff.native.context import Context
from skiff.users import admin_or_exit, fail

if TYPE_CHECKING:
    from keycloak import KeycloakAdmin

PREFIX = "device-"
# Marks the clients this command manages; revoke and list touch no other client.
ATTRIBUTE = "skiff.device"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# The shared devices' client in the realm file: every device client is a copy.
TEMPLATE_ID = "${DEVICE_CLIENT_ID}"

out = Console()


class DeviceError(ValueError):
    """A device name or state that the command refuses; the message says why."""


@dataclass(frozen=True)
class DeviceRow:
    name: str
    client_id: str
    enabled: bool


def client_id(name: str) -> str:
    if not NAME.fullmatch(name):
        raise DeviceError(f"device name {name!r}: use 1 to 63 lower-case letters, digits, '.', '_' "
                          "or '-', starting with a letter or digit")
    return f"{PREFIX}{name}"


def representation(ctx: Context, name: str) -> dict[str, Any]:
    """The client of device ``name``: the realm file's devices client, renamed, no shared secret."""
    template = next((c for c in _realm(ctx)["clients"] if c["clientId"] == TEMPLATE_ID), None)
    if template is None:
        raise DeviceError(f"the realm file has no devices client ({TEMPLATE_ID}) to copy")
    rep = copy.deepcopy(template)
    rep.pop("secret", None)  # Keycloak generates one of its own
    rep.update(clientId=client_id(name), name=f"Device {name}", enabled=True,
               attributes={**rep.get("attributes", {}), ATTRIBUTE: "true"})
    return rep


def add(ctx: Context, admin: KeycloakAdmin, name: str) -> str:
    """Create device ``name``'s client; returns its secret."""
    wanted = representation(ctx, name)
    if admin.get_client_id(wanted["clientId"]) is not None:
        # A revoked name stays taken: its tokens' azp must never name a second device.
        raise DeviceError(f"device {name!r} exists already (client {wanted['clientId']}, "
                          "skiff devices list says whether it is revoked); pick another name")
    internal = admin.create_client(wanted)
    return str(admin.get_client_secrets(internal)["value"])


def revoke(admin: KeycloakAdmin, name: str) -> None:
    """Disable device ``name``'s client: Keycloak gives it no new token."""
    internal, rep = _managed(admin, name)
    rep["enabled"] = False
    admin.update_client(internal, rep)


def listing(admin: KeycloakAdmin) -> list[DeviceRow]:
    return sorted((DeviceRow(c["clientId"].removeprefix(PREFIX), c["clientId"], bool(c.get("enabled")))
                   for c in admin.get_clients()
                   if (c.get("attributes") or {}).get(ATTRIBUTE) == "true"),
                  key=lambda row: row.name)


def _managed(admin: KeycloakAdmin, name: str) -> tuple[str, dict[str, Any]]:
    internal = admin.get_client_id(client_id(name))
    rep = admin.get_client(internal) if internal else None
    if internal is None or rep is None or (rep.get("attributes") or {}).get(ATTRIBUTE) != "true":
        raise DeviceError(f"no device {name!r} (skiff devices list shows them)")
    return internal, rep


def token_lifespan(ctx: Context) -> int:
    """Seconds a device's token lives (the realm file's access token lifespan)."""
    return int(_realm(ctx).get("accessTokenLifespan", 300))


def _realm(ctx: Context) -> dict[str, Any]:
    """The realm file as written (its ``${VAR}`` placeholders unresolved)."""
    return json.loads(ctx.compose_file("keycloak", "realm-skiff.json").read_text())


# --- the command ------------------------------------------------------------------------

@click.group()
def devices() -> None:
    """Give each device its own credentials, and take one device's away.

    \b
    skiff devices add bracelet-0042      # prints the client id and secret once
    skiff devices revoke bracelet-0042   # no new tokens; the current one expires within 300 s
    skiff devices list
    """


@devices.command("add")
@click.argument("name")
def add_command(name: str) -> None:
    """Create device NAME's credentials (client device-NAME) and print them once."""
    from keycloak.exceptions import KeycloakError

    from skiff import keycloak as kc

    try:
        client_id(name)
    except DeviceError as exc:
        fail(str(exc))
    ctx = Context.discover()
    try:
        secret = add(ctx, admin_or_exit(ctx), name)
    except DeviceError as exc:
        fail(str(exc))
    except KeycloakError as exc:
        fail(f"Keycloak refused to create device {name!r}: {kc.describe(exc)}")
    s = ctx.settings
    out.print(f"device [bold]{name}[/]: client credentials at "
              f"{s.keycloak_issuer}/protocol/openid-connect/token, then "
              f"`Authorization: Bearer <token>` to {s.public_url}/model/v1/predict")
    # Printed once, alone on their lines, so they can be piped into the device's setup.
    out.print(f"client_id: {client_id(name)}", highlight=False, markup=False)
    out.print(f"client_secret: {secret}", highlight=False, markup=False)


@devices.command("revoke")
@click.argument("name")
def revoke_command(name: str) -> None:
    """Cut device NAME off: Keycloak refuses it new tokens at once."""
    from keycloak.exceptions import KeycloakError

    from skiff import keycloak as kc

    ctx = Context.discover()
    try:
        revoke(admin_or_exit(ctx), name)
    except DeviceError as exc:
        fail(str(exc))
    except KeycloakError as exc:
        fail(f"Keycloak refused to revoke device {name!r}: {kc.describe(exc)}")
    out.print(f"device [bold]{name}[/] revoked: no new tokens; a token it holds now stops "
              f"working when it expires (at most {token_lifespan(ctx)} s)")


@devices.command("list")
def list_command() -> None:
    """Devices with credentials of their own, and whether each may still get tokens."""
    from keycloak.exceptions import KeycloakError

    from skiff import keycloak as kc

    ctx = Context.discover()
    table = Table("device", "client", "may get tokens")
    try:
        rows = listing(admin_or_exit(ctx))
    except KeycloakError as exc:
        fail(f"Keycloak refused to list the devices: {kc.describe(exc)}")
    for row in rows:
        table.add_row(row.name, row.client_id, "yes" if row.enabled else "no (revoked)")
    out.print(table)
