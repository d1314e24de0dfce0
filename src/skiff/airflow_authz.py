"""What each realm role may do in Airflow, written into Keycloak's Authorization Services.

Airflow's Keycloak auth manager (apache-airflow-providers-keycloak) authorizes
every API call by asking Keycloak for a permission ``<Resource>#<scope>`` on the
``airflow`` client (UMA grant), e.g. ``Dag#POST`` to trigger a run, pushing the
request's details as claims: ``resource_id`` (a DAG id, a view name) and, for
DAGs, ``dag_entity`` (``RUN``, ``CODE``, ``TASK_INSTANCE``... or none for the DAG
itself). The provider's own CLI (``airflow keycloak-auth-manager create-all``)
writes Airflow's stock roles (Viewer, User, Op, Admin); the platform's roles are
finer, because a citizen may trigger runs but not read code nor pause a DAG, and
telling those apart takes the pushed ``dag_entity`` claim. So this module writes
the same scopes and resources as the CLI, and its own policies and permissions:

- a role policy per grant (the realm roles it is for);
- regex policies on the pushed claims (``targetContextAttributes``) for the
  conditions: "about a DAG's runs", "not its code", "about a part of a DAG";
- one scope permission per grant, with the conjunction of both (aggregate policy);
- the resource server decides AFFIRMATIVE: one granting permission suffices.

It converges: run it again and it creates what is missing, rewrites what
differs, and deletes ``skiff-`` policies and permissions no longer in the model.
See docs/decisions/0008-airflow-keycloak.md for the table of roles.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakGetError, KeycloakPostError, raise_error_from_response

from skiff.settings import Settings

log = logging.getLogger(__name__)

CLIENT_ID = "airflow"
PREFIX = "skiff-"

# The provider's vocabulary (0.11.2 on Airflow 3.3): the scopes are Airflow's
# ResourceMethod values plus MENU and LIST, the resources its KeycloakResource
# enum, plus one resource per UI menu item (Airflow's MenuItem enum).
# tests/integration/test_airflow_sso.py checks these against the installed provider.
METHODS = ("GET", "POST", "PUT", "DELETE")
SCOPES = (*METHODS, "MENU", "LIST")
RESOURCES = ("AdminView", "Asset", "AssetAlias", "Backfill", "Configuration", "Connection", "Custom",
             "Dag", "Menu", "Pool", "Team", "Variable", "View")
MENU_ITEMS = ("Required Actions", "Assets", "Audit Log", "Config", "Connections", "Dags", "Deadlines",
              "Docs", "Jobs", "Plugins", "Pools", "Providers", "Variables", "XComs")
# What the provider's CLI gives resources: menu items have only MENU.
RESOURCE_SCOPES = ("GET", "POST", "PUT", "DELETE", "LIST")


@dataclass(frozen=True)
class Condition:
    """A regex policy on one claim the auth manager pushes with the permission request."""

    name: str
    claim: str
    pattern: str
    negate: bool = False
    description: str = ""


CONDITIONS = {c.name: c for c in (
    Condition("dag-run", "dag_entity", "^RUN$",
              description="The request is about a DAG's runs (trigger, clear, mark, delete a run)"),
    Condition("not-dag-code", "dag_entity", "^CODE$", negate=True,
              description="The request is not for a DAG's source code"),
    Condition("dag-part", "dag_entity", ".+",
              description="The request is about a part of a DAG (runs, task instances...), "
                          "not the DAG itself"),
    Condition("basic-view", "resource_id", "^(WEBSITE|DOCS|CLUSTER_ACTIVITY)$",
              description="The home page, the docs and the cluster activity dashboard"),
)}

PIPELINE_RESOURCES = ("Dag", "Asset", "AssetAlias", "Backfill")
OPERATED_RESOURCES = (*PIPELINE_RESOURCES, "Connection", "Pool", "Variable")
READERS = ("viewer", "citizen")
# The least role that may trigger runs: what the training trigger's own user gets.
TRAINING_TRIGGER_ROLE = "citizen"
AUTHORS = ("data-scientist", "data-engineer")


@dataclass(frozen=True)
class Grant:
    """One permission: these realm roles may use these scopes on these resources (if the condition holds).

    No resources means every resource that has the scopes.
    """

    name: str
    roles: tuple[str, ...]
    resources: tuple[str, ...]
    scopes: tuple[str, ...]
    when: str | None = None
    description: str = ""


GRANTS = (
    # viewer and citizen: pipelines, runs, task logs, assets; no DAG source, no
    # connections, variables, pools or configuration, and only the basic views.
    Grant("read-pipelines", READERS, PIPELINE_RESOURCES, ("GET", "LIST"), "not-dag-code",
          "Read DAGs, runs, task instances, logs and assets, but not DAG source code"),
    Grant("basic-views", READERS, ("View",), ("GET",), "basic-view",
          "Home page, docs and cluster activity"),
    Grant("pipeline-menus", (*READERS, *AUTHORS), ("Dags", "Assets", "Docs"), ("MENU",),
          description="The Dags, Assets and Docs menus"),
    # citizen: "runs and views pipelines, no code".
    Grant("trigger-runs", ("citizen",), ("Dag",), ("POST",), "dag-run",
          "Trigger DAG runs"),
    # data-scientist: everything DAG-related, to read and to run: source code,
    # pause/unpause, trigger, clear and mark runs and task instances, delete runs.
    Grant("read-pipelines-and-code", AUTHORS, PIPELINE_RESOURCES, ("GET", "LIST"),
          description="Read everything DAG-related, source code included"),
    Grant("all-views", AUTHORS, ("View",), ("GET",),
          description="Every view: import errors, jobs, plugins, providers, triggers too"),
    Grant("dag-detail-menus", AUTHORS, ("XComs", "Audit Log", "Required Actions"), ("MENU",),
          description="The XComs, Audit Log and Required Actions menus"),
    Grant("run-and-edit-dags", ("data-scientist",), ("Dag",), ("POST", "PUT"),
          description="Trigger, pause/unpause, clear and mark runs and task instances"),
    Grant("delete-runs", ("data-scientist",), ("Dag",), ("DELETE",), "dag-part",
          "Delete runs and task instances, not DAGs"),
    # data-engineer: operates Airflow: DAGs (deleting them too), connections,
    # variables, pools, assets; every menu but Config.
    Grant("operate", ("data-engineer",), OPERATED_RESOURCES, (*METHODS, "LIST"),
          description="Everything on DAGs, assets, connections, variables and pools"),
    Grant("operations-menus", ("data-engineer",),
          ("Connections", "Variables", "Pools", "Jobs", "Plugins", "Providers", "Deadlines"), ("MENU",),
          description="The Admin and Browse menus but Config"),
    # admin: everything, configuration included.
    Grant("admin", ("admin",), (), SCOPES, description="Everything"),
)


def check_model(grants: Iterable[Grant] = GRANTS, roles: Iterable[str] | None = None) -> None:
    """Every name a grant uses exists: a typo must fail the bootstrap, not deny silently."""
    from skiff.keycloak import ROLES

    known_roles = set(roles if roles is not None else ROLES)
    known_resources = set(RESOURCES) | set(MENU_ITEMS)
    for grant in grants:
        problems = [f"role {r!r}" for r in grant.roles if r not in known_roles]
        problems += [f"resource {r!r}" for r in grant.resources if r not in known_resources]
        problems += [f"scope {s!r}" for s in grant.scopes if s not in SCOPES]
        if grant.when is not None and grant.when not in CONDITIONS:
            problems.append(f"condition {grant.when!r}")
        if problems:
            raise ValueError(f"Airflow grant {grant.name!r} names unknown {', '.join(problems)}")


# --- The representations Keycloak's admin API takes ------------------------------------------


def role_policy_name(grant: Grant) -> str:
    return f"{PREFIX}{grant.name}-roles"


def condition_policy_name(condition: str) -> str:
    return f"{PREFIX}{condition}"


def grant_policy_name(grant: Grant) -> str:
    """The policy the grant's permission applies: its roles, and its condition if it has one."""
    # Not the permission's name: policies and permissions share one namespace.
    return f"{role_policy_name(grant)}-and-{grant.when}" if grant.when else role_policy_name(grant)


def permission_name(grant: Grant) -> str:
    return f"{PREFIX}{grant.name}"


@dataclass
class Model:
    """The policies and permissions to converge to, by name, with names where ids will go."""

    # name -> (type, representation); role/policy references are names until resolved.
    policies: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    permissions: dict[str, dict[str, Any]] = field(default_factory=dict)


def build(grants: Iterable[Grant] = GRANTS) -> Model:
    grants = tuple(grants)
    model = Model()
    for name in sorted({g.when for g in grants if g.when}):
        c = CONDITIONS[name]
        model.policies[condition_policy_name(name)] = ("regex", {
            "name": condition_policy_name(name), "type": "regex", "description": c.description,
            "logic": "NEGATIVE" if c.negate else "POSITIVE", "decisionStrategy": "UNANIMOUS",
            "targetClaim": c.claim, "pattern": c.pattern,
            # Match the claims the auth manager pushes with the request, not the token's.
            "targetContextAttributes": True,
        })
    for g in grants:
        model.policies[role_policy_name(g)] = ("role", {
            "name": role_policy_name(g), "type": "role", "logic": "POSITIVE",
            "decisionStrategy": "UNANIMOUS", "description": f"Realm roles {', '.join(g.roles)}",
            # Any one of the roles (none is required); from the token's realm_access.
            "roles": [{"id": r, "required": False} for r in g.roles], "fetchRoles": False,
        })
        if g.when:
            model.policies[grant_policy_name(g)] = ("aggregate", {
                "name": grant_policy_name(g), "type": "aggregate", "logic": "POSITIVE",
                "decisionStrategy": "UNANIMOUS", "description": g.description,
                "policies": [role_policy_name(g), condition_policy_name(g.when)],
            })
        model.permissions[permission_name(g)] = {
            "name": permission_name(g), "type": "scope", "logic": "POSITIVE",
            "decisionStrategy": "UNANIMOUS", "description": g.description,
            "resources": list(g.resources), "scopes": list(g.scopes),
            "policies": [grant_policy_name(g)],
        }
    return model


# --- Converging Keycloak to the model ----------------------------------------------------------


class Authz:
    """The admin API of the ``airflow`` client's resource server (raw calls: the typed
    python-keycloak helpers cannot update every kind of policy)."""

    def __init__(self, admin: KeycloakAdmin, client_uuid: str) -> None:
        self.admin = admin
        realm = admin.connection.realm_name
        self.base = f"admin/realms/{realm}/clients/{client_uuid}/authz/resource-server"

    def get(self, path: str, **params: Any) -> Any:
        resp = self.admin.connection.raw_get(f"{self.base}{path}", **params)
        return raise_error_from_response(resp, KeycloakGetError)

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        call = {"POST": self.admin.connection.raw_post, "PUT": self.admin.connection.raw_put,
                "DELETE": self.admin.connection.raw_delete}[method]
        data = json.dumps(body) if body is not None else None
        resp = call(f"{self.base}{path}", data=data) if data is not None else call(f"{self.base}{path}")
        expected = {"POST": [201], "PUT": [201, 204], "DELETE": [204]}[method]
        return raise_error_from_response(resp, KeycloakPostError, expected_codes=expected)


@dataclass
class Report:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in (("created", self.created), ("updated", self.updated),
                                              ("deleted", self.deleted)) if v]
        return ", ".join(parts) or "up to date"


def _resource_server(authz: Authz, report: Report) -> None:
    settings = authz.get("")
    wanted = {"policyEnforcementMode": "ENFORCING", "decisionStrategy": "AFFIRMATIVE"}
    if any(settings.get(k) != v for k, v in wanted.items()):
        authz.send("PUT", "", {**settings, **wanted})
        report.updated.append("resource server")


def _scopes(authz: Authz, report: Report) -> dict[str, str]:
    have = {s["name"]: s["id"] for s in authz.get("/scope", max=-1)}
    for name in SCOPES:
        if name not in have:
            authz.send("POST", "/scope", {"name": name})
            report.created.append(f"scope {name}")
    return {s["name"]: s["id"] for s in authz.get("/scope", max=-1)}


def _resources(authz: Authz, report: Report) -> dict[str, str]:
    wanted: dict[str, tuple[str, ...]] = dict.fromkeys(RESOURCES, RESOURCE_SCOPES)
    wanted.update({name: ("MENU",) for name in MENU_ITEMS})
    have = {r["name"]: r for r in authz.get("/resource", max=-1, deep=True)}
    for name, scopes in wanted.items():
        body = {"name": name, "scopes": [{"name": s} for s in scopes]}
        if name not in have:
            authz.send("POST", "/resource", body)
            report.created.append(f"resource {name}")
        elif sorted(s["name"] for s in have[name].get("scopes", [])) != sorted(scopes):
            rid = have[name]["_id"]
            authz.send("PUT", f"/resource/{rid}", {**body, "_id": rid})
            report.updated.append(f"resource {name}")
    # Keycloak's sample (a grant-all policy on a "Default Resource") is no part of the model.
    for name in ("Default Permission", "Default Policy"):
        for p in authz.get("/policy", name=name, max=-1):
            if p["name"] == name:
                authz.send("DELETE", f"/policy/{p['id']}")
                report.deleted.append(f"policy {name}")
    if "Default Resource" in have:
        authz.send("DELETE", f"/resource/{have['Default Resource']['_id']}")
        report.deleted.append("resource Default Resource")
    return {r["name"]: r["_id"] for r in authz.get("/resource", max=-1)}


def _differs(have: dict[str, Any], want: dict[str, Any], associated: dict[str, set[str]]) -> bool:
    """Whether an existing policy or permission is not what the model says."""
    for key, value in want.items():
        if key in ("policies", "resources", "scopes", "roles"):
            if set(associated.get(key, set())) != {v["id"] if isinstance(v, dict) else v for v in value}:
                return True
        elif key in ("targetClaim", "pattern", "targetContextAttributes", "fetchRoles"):
            current = have.get(key, (have.get("config") or {}).get(key))
            if str(current).lower() != str(value).lower():
                return True
        elif have.get(key) != value:
            return True
    return False


def _associated(authz: Authz, have: dict[str, Any]) -> dict[str, set[str]]:
    """The ids an existing policy or permission refers to (Keycloak lists them separately)."""
    pid = have["id"]
    out: dict[str, set[str]] = {}
    kind = have["type"]
    if kind in ("aggregate", "scope"):
        out["policies"] = {p["id"] for p in authz.get(f"/policy/{pid}/associatedPolicies")}
    if kind == "scope":
        out["resources"] = {r["_id"] for r in authz.get(f"/policy/{pid}/resources")}
        out["scopes"] = {s["id"] for s in authz.get(f"/policy/{pid}/scopes")}
    if kind == "role":
        detail = authz.get(f"/policy/role/{pid}")
        out["roles"] = {r["id"] for r in detail.get("roles", [])}
    return out


def converge(admin: KeycloakAdmin, grants: Iterable[Grant] = GRANTS) -> Report:
    """Make the ``airflow`` client's authorization settings the model's (idempotent)."""
    grants = tuple(grants)
    check_model(grants)
    report = Report()
    client_uuid = admin.get_client_id(CLIENT_ID)
    if client_uuid is None:
        raise RuntimeError(f"client {CLIENT_ID!r} is missing from realm {admin.connection.realm_name!r} "
                           "(it comes from compose/keycloak/realm-skiff.json)")
    authz = Authz(admin, client_uuid)
    _resource_server(authz, report)
    scope_ids = _scopes(authz, report)
    resource_ids = _resources(authz, report)
    role_ids = {r: admin.get_realm_role(r)["id"] for g in grants for r in g.roles}
    model = build(grants)

    existing = {p["name"]: p for p in authz.get("/policy", max=-1) if p["name"].startswith(PREFIX)}
    ids: dict[str, str] = {}

    def resolve(rep: dict[str, Any]) -> dict[str, Any]:
        rep = dict(rep)
        if "roles" in rep:
            rep["roles"] = [{"id": role_ids[r["id"]], "required": r["required"]} for r in rep["roles"]]
        if "policies" in rep:
            rep["policies"] = [ids[p] for p in rep["policies"]]
        if "resources" in rep:
            rep["resources"] = [resource_ids[r] for r in rep["resources"]]
        if "scopes" in rep:
            rep["scopes"] = [scope_ids[s] for s in rep["scopes"]]
        return rep

    def put(kind: str, path: str, name: str, rep: dict[str, Any]) -> None:
        rep = resolve(rep)
        have = existing.get(name)
        if have is not None and have["type"] != rep["type"]:
            authz.send("DELETE", f"/policy/{have['id']}")
            report.deleted.append(f"{kind} {name}")
            have = None
        if have is None:
            created = authz.send("POST", path, rep)
            ids[name] = created["id"] if isinstance(created, dict) and "id" in created else \
                next(p["id"] for p in authz.get("/policy", name=name, max=-1) if p["name"] == name)
            report.created.append(f"{kind} {name}")
        else:
            ids[name] = have["id"]
            if _differs(have, rep, _associated(authz, have)):
                authz.send("PUT", f"{path}/{have['id']}", {**rep, "id": have["id"]})
                report.updated.append(f"{kind} {name}")

    # Policies in dependency order: regex and role policies before the aggregates using them.
    order = {"regex": 0, "role": 0, "aggregate": 1}
    for name, (kind, rep) in sorted(model.policies.items(), key=lambda kv: order[kv[1][0]]):
        put("policy", f"/policy/{kind}", name, rep)
    for name, rep in model.permissions.items():
        put("permission", "/permission/scope", name, rep)
    # What the model no longer has: permissions first, they refer to the policies.
    wanted = set(model.policies) | set(model.permissions)
    stale = sorted((p for n, p in existing.items() if n not in wanted), key=lambda p: p["type"] != "scope")
    for p in stale:
        authz.send("DELETE", f"/policy/{p['id']}")
        report.deleted.append(f"{p['type']} {p['name']}")
    return report


def ensure_service_user(admin: KeycloakAdmin, settings: Settings, name: str, password: str,
                        role: str) -> str:
    """A non-personal realm user with exactly one platform role and .env's password.

    Created if missing; its password is set on every run, so a password changed
    in .env takes effect at the next bootstrap. Returns "created" or "kept".
    """
    from skiff import keycloak as kc

    user = kc.find_user(admin, name)
    if user is None:
        kc.create_user(settings, name, role, team=None, password=password,
                       email=f"{name}@skiff.invalid", admin=admin)
        user = kc.find_user(admin, name)
        assert user is not None
        outcome = "created"
    else:
        admin.set_user_password(user["id"], password, temporary=False)
        outcome = "kept"
    # Names too: Keycloak's default user profile wants them before a password grant.
    admin.update_user(user["id"], {"firstName": "Skiff", "lastName": name, "requiredActions": []})
    current = {r["name"] for r in admin.get_realm_roles_of_user(user["id"])}
    extra = [admin.get_realm_role(r) for r in current & set(kc.ROLES) if r != role]
    if extra:
        admin.delete_realm_roles_of_user(user["id"], extra)
    if role not in current:
        admin.assign_realm_roles(user["id"], [admin.get_realm_role(role)])
    return outcome
