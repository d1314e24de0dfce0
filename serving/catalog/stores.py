"""Managed data sources: each user's private S3 store, their teams' stores, the public one.

``provision(user, teams)`` makes the S3 side match the user's teams and
registers the stores in the catalog as ``data_source`` assets; it is
idempotent (a second call changes nothing) and is called by
``GET /api/v1/me`` and ``POST /api/v1/users/NAME/provision``.
Why this design: docs/decisions/0015-data-sources.md. On the gateway:

- an IAM account ``skiff-<user>`` (role ``user``: may not create buckets) with a
  random secret; only the user (through the catalog's owner-only credentials
  endpoint) and the catalog, encrypted, hold it;
- ``user-<user>``: owned by that account (ACL: owner only, no policy);
- ``team-<team>``: owned by root, with a policy naming the members' accounts;
  a member who left the team is taken out at their next provisioning;
- ``public``: owned by root; every account reads it, each writes only under
  ``public/<user>/``;
- the platform's ``pipelines`` and ``events`` buckets: each account reaches only
  its own folders there (``own_folders``), which is what user code needs of them
  with the person's keys in place of the platform's.

Names are cut to S3's rules (lower case, digits, hyphens, 63 characters); a
name that had to change gets a short hash of the original, so two names never
share a bucket.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from serving.catalog.s3gateway import (
    OBJECT_READ,
    OBJECT_WRITE,
    Gateway,
    GatewayError,
    S3Config,
    own_folders_statement,
    principals,
    public_policy,
    team_policy,
    with_statement_of,
)
from skiff.events.context import own_run_folders
from skiff.events.transport import DEFAULT_BUCKET as EVENTS_BUCKET
from skiff.pipelines.defaults import PIPELINES_BUCKET
from skiff.pipelines.spec import SpecError, dag_namespace

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from serving.catalog.crypto import Secrets
    from serving.catalog.db import Database

log = logging.getLogger("serving.catalog.stores")

KIND = "data_source"
PUBLIC = "public"
USER_PREFIX = "user-"
TEAM_PREFIX = "team-"
ACCESS_PREFIX = "skiff-"
# The owner of the team and public stores: nobody's account, so only admins (and,
# for a team store, its members) may edit their catalog entries.
PLATFORM_OWNER = "skiff"
# Serialises provisioning across the catalog's workers: team and public policies
# are read, changed and written back, and two logins at once must not lose one.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"skiff.catalog.stores").digest()[:4], "big") >> 1
S3_SAFE = re.compile(r"[^a-z0-9]+")


def slug(name: str, room: int = 58) -> str:
    """``name`` in S3's bucket alphabet, at most ``room`` characters, distinct per name."""
    cut = S3_SAFE.sub("-", name.lower()).strip("-")
    if cut == name and len(cut) <= room:
        return cut
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{cut[:room - 9].rstrip('-')}-{digest}" if cut else digest


def user_bucket(user: str) -> str:
    return USER_PREFIX + slug(user)


def team_bucket(team: str) -> str:
    return TEAM_PREFIX + slug(team)


def access_key(user: str) -> str:
    return ACCESS_PREFIX + slug(user)


def public_prefix(key: str) -> str:
    """The folder of ``public`` that the account ``key`` may write."""
    return key.removeprefix(ACCESS_PREFIX)


# A person's runs write their images and files to the events bucket; the notification
# service reads them back for the run's readers with its own keys, never theirs.
EVENT_WRITE = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]


def own_folders(user: str) -> dict[str, tuple[list[str], list[str]]]:
    """bucket -> (actions, folders) of the platform's buckets that ``user``'s keys reach.

    ``pipelines``: their Elyra pipelines' files (uploaded from their notebook server,
    under the DAG id). ``events``: the files of their notebooks', scripts' and
    pipelines' runs (a run's files are kept under its name).
    """
    try:
        dags = [dag_namespace(user)]
    except SpecError:  # a name without a letter or digit has no pipelines
        dags = []
    return {PIPELINES_BUCKET: (OBJECT_READ + OBJECT_WRITE, dags),
            EVENTS_BUCKET: (EVENT_WRITE, [*own_run_folders(user), *dags])}


def is_reserved(kind: str, name: str) -> bool:
    """Names the catalog keeps for managed stores: refuse them to ordinary callers."""
    return kind == KIND and (name == PUBLIC or name.startswith((USER_PREFIX, TEAM_PREFIX)))


@dataclass(frozen=True)
class Store:
    """One managed store as the catalog registers it."""

    name: str
    bucket: str
    owner: str
    team: str | None
    access: str
    description: str
    secret: dict[str, str] | None = field(default=None, repr=False)

    @property
    def ref(self) -> str:
        return f"{KIND}/{self.name}"

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/"

    def spec(self, config: S3Config) -> dict[str, Any]:
        return {"type": "s3", "managed": True,
                "s3": {"endpoint": config.endpoint, "bucket": self.bucket,
                       "region": config.region}}


@dataclass
class Outcome:
    stores: list[Store]
    # What this call changed on the gateway, e.g. "created account skiff-alice"; empty: nothing.
    changes: list[str]


def ensure(gateway: Gateway, user: str, teams: Iterable[str]) -> Outcome:
    """Make the gateway match ``user`` in ``teams``; the caller holds the provisioning lock."""
    teams = sorted({t.strip("/") for t in teams if t and t.strip("/")})
    changes: list[str] = []
    key = access_key(user)
    accounts = gateway.accounts()
    if key not in accounts:
        secret = _new_secret()
        try:
            gateway.create_account(key, secret)
            changes.append(f"created account {key}")
        except GatewayError as exc:
            # Another gateway client got there first: its keys are the keys.
            if exc.code != "XAdminUserExists":
                raise
        accounts = gateway.accounts()
    secret = accounts[key]

    owners = gateway.bucket_owners()
    mine = user_bucket(user)
    if mine not in owners:
        gateway.create_bucket(mine, owner=key)
        changes.append(f"created bucket {mine} owned by {key}")
    elif owners[mine] != key:
        gateway.change_owner(mine, key)
        changes.append(f"gave bucket {mine} to {key}")

    wanted = {team_bucket(t): t for t in teams}
    for bucket in sorted(set(wanted) - set(owners)):
        gateway.create_bucket(bucket)
        changes.append(f"created bucket {bucket}")
    # Every team bucket, not only the wanted ones: leaving a team takes the key out.
    for bucket in sorted(set(wanted) | {b for b in owners if b.startswith(TEAM_PREFIX)}):
        changes += _sync_members(gateway, bucket, key, bucket in wanted, accounts)

    if PUBLIC not in owners:
        gateway.create_bucket(PUBLIC)
        changes.append(f"created bucket {PUBLIC}")
    changes += _sync_public(gateway, key, accounts)
    changes += _sync_own_folders(gateway, user, key, set(accounts), owners)

    stores = [Store(name=mine, bucket=mine, owner=user, team=None, access="private",
                    description=f"Private S3 store of {user}: bucket {mine}, keys only "
                                f"{user} holds (GET .../credentials)",
                    secret={"access_key": key, "secret_key": secret})]
    stores += [Store(name=b, bucket=b, owner=PLATFORM_OWNER, team=t, access="team",
                     description=f"S3 store of team {t}: bucket {b}; every member's own keys "
                                 "(their user- store's credentials) read and write it")
               for b, t in sorted(wanted.items())]
    stores.append(Store(name=PUBLIC, bucket=PUBLIC, owner=PLATFORM_OWNER, team=None,
                        access="public",
                        description="Public S3 store: bucket public; every user reads it "
                                    "and writes under public/NAME/ (NAME as in their own "
                                    "store, user-NAME)"))
    return Outcome(stores=stores, changes=changes)


def _sync_members(gateway: Gateway, bucket: str, key: str, member: bool,
                  accounts: Mapping[str, str]) -> list[str]:
    current = gateway.policy(bucket)
    had = principals(current)
    # A deleted account left in a policy would make the gateway refuse the whole policy.
    members = {k for k in had if k in accounts}
    members = members | {key} if member else members - {key}
    wanted = team_policy(bucket, members) if members else None
    if current == wanted:
        return []
    gateway.set_policy(bucket, wanted)
    if key in members - had:
        return [f"added {key} to {bucket}"]
    if key in had - members:
        return [f"removed {key} from {bucket}"]
    return [f"rewrote the policy of {bucket}"]


def _sync_public(gateway: Gateway, key: str, accounts: Mapping[str, str]) -> list[str]:
    current = gateway.policy(PUBLIC)
    keys = {k for k in principals(current) if k in accounts} | {key}
    wanted = public_policy(PUBLIC, {k: public_prefix(k) for k in keys})
    if current == wanted:
        return []
    gateway.set_policy(PUBLIC, wanted)
    return [f"added {key} to {PUBLIC}" if key not in principals(current)
            else f"rewrote the policy of {PUBLIC}"]


def _sync_own_folders(gateway: Gateway, user: str, key: str, accounts: set[str],
                      owners: Mapping[str, str]) -> list[str]:
    changes = []
    for bucket, (actions, folders) in own_folders(user).items():
        if bucket not in owners:  # not bootstrapped here: nothing to reach
            continue
        current = gateway.policy(bucket)
        statement = own_folders_statement(bucket, key, actions, folders) if folders else None
        wanted = with_statement_of(current, key, statement, accounts)
        if current != wanted:
            gateway.set_policy(bucket, wanted)
            changes.append(f"gave {key} its own folders of {bucket}")
    return changes


def _new_secret() -> str:
    import secrets

    return secrets.token_urlsafe(30)


# --- the catalog side -------------------------------------------------------------------


def register(session: Session, secrets: Secrets, config: S3Config, stores: list[Store]) -> list[str]:
    """Create or correct the stores' ``data_source`` assets; returns the refs registered.

    An asset already as it should be is not written (updated_at stays). One of
    the same name that is not a managed store (registered by hand before the
    user existed) is left alone and logged, never taken over.
    """
    from serving.catalog import assets

    refs = []
    for store in stores:
        spec = store.spec(config)
        asset = assets.find_asset(session, KIND, store.name)
        if asset is not None and not (asset.spec or {}).get("managed"):
            log.error("%s is registered but is not a managed store; left as it is", store.ref)
            continue
        if asset is None or not _up_to_date(asset, store, spec, secrets):
            asset = assets.upsert_managed_source(
                session, secrets, name=store.name, owner=store.owner, team=store.team,
                access_level=store.access, description=store.description,
                spec={k: v for k, v in spec.items() if k != "managed"}, secret=store.secret)
            asset.location = store.location
        refs.append(store.ref)
    return refs


def _up_to_date(asset: Any, store: Store, spec: dict[str, Any], secrets: Secrets) -> bool:
    stored = secrets.open(asset.secret) if asset.secret else None
    return (asset.owner, asset.team, asset.access, asset.description, asset.location,
            asset.spec, stored) == (store.owner, store.team, store.access, store.description,
                                    store.location, spec, store.secret)


@dataclass
class Provisioner:
    """What ``provision`` needs: the catalog's database and key, and the gateway."""

    db: Database
    secrets: Secrets
    gateway: Gateway

    def provision(self, user: str, teams: Iterable[str]) -> list[str]:
        from sqlalchemy import text

        with self.db.session() as session:
            # Held until this transaction ends: the gateway's policies and the
            # assets change together, one provisioning at a time, whichever worker.
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            outcome = ensure(self.gateway, user, teams)
            refs = register(session, self.secrets, self.gateway.config, outcome.stores)
        if outcome.changes:
            log.info("provisioned %s: %s", user, "; ".join(outcome.changes))
        return refs


_gateway: Gateway | None = None
_gateway_lock = threading.Lock()


def gateway() -> Gateway:
    """The process's gateway client, from the environment (S3_HOST, S3_PORT, root keys)."""
    global _gateway
    with _gateway_lock:
        if _gateway is None:
            _gateway = Gateway(S3Config.from_env(os.environ))
        return _gateway


def provision(user: str, teams: list[str]) -> list[str]:
    """Create what ``user`` in ``teams`` should have; idempotent. Returns the asset refs.

    Runs inside a catalog request (its database and key, serving.catalog.state).
    """
    from serving.catalog.state import current

    state = current()
    return Provisioner(state.db, state.secrets, gateway()).provision(user, teams)
