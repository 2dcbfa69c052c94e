"""Child nodes' credentials kept in the database, so an administrator's rotation or
revocation (the /admin/nodes page) survives a restart.

At start-up a node accepts the children of HOPSO_NODE_CHILDREN overlaid by the stored
rows (`load_credentials`): a stored secret replaces the configured one, a revoked row
removes the child. Secrets never appear in logs, views or HTTP responses.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from sqlmodel import col, select

from rooms.db import Database
from rooms.errors import Invalid
from rooms.models import NodeCredential, utcnow

if TYPE_CHECKING:
    from server.cascade.link import NodeCascade

log = logging.getLogger(__name__)
CREDENTIALS_REFRESH_S = 5.0

MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 256
MAX_UNIT_LENGTH = 64
# A new child's unit: letters (any script), digits and : . _ - (e.g. "ward:dong-phu").
# Units already configured through HOPSO_NODE_CHILDREN are accepted as they are.
_UNIT = re.compile(r"[\w:.\-]+")
_SECRET = re.compile(r"[!-~]+")  # printable ASCII, no spaces: it goes into an env variable


async def load_credentials(db: Database, node: NodeCascade) -> None:
    """Overlay the stored rotations and revocations on the node's children. At start-up
    (before `start_parent_link`), and then every CREDENTIALS_REFRESH_S so that a rotation
    or revocation made through another process of this node applies here too: a child
    whose credential changed loses its live link here (it reconnects with the new one)."""
    async with db.session() as s:
        rows = (await s.exec(select(NodeCredential))).all()
    changed = 0
    for row in rows:
        if row.revoked or not row.secret:
            if row.unit in node.credentials:
                node.revoke(row.unit)
                changed += 1
        elif node.credentials.get(row.unit) != row.secret:
            node.rotate(row.unit, row.secret)
            changed += 1
    if changed:
        log.info("cascade: %d stored child credential change(s) applied", changed)


async def save_credential(db: Database, unit: str, secret: str | None) -> None:
    """Store a child's new secret, or its revocation (secret None)."""
    async with db.session() as s:
        row = await s.get(NodeCredential, unit)
        if row is None:
            row = NodeCredential(unit=unit)
        row.secret, row.revoked, row.updated_at = secret, secret is None, utcnow()
        s.add(row)


async def revoked_units(db: Database) -> list[str]:
    async with db.session() as s:
        rows = await s.exec(select(NodeCredential.unit)
                            .where(col(NodeCredential.revoked).is_(True))
                            .order_by(NodeCredential.unit))
        return list(rows.all())


def check_unit(node: NodeCascade, unit: str) -> str:
    """A unit the administrator may give a credential to: a known child, or a well-formed
    new name that is neither this node nor on its path to the root."""
    if unit in node.credentials:
        return unit
    if not unit or len(unit) > MAX_UNIT_LENGTH or not _UNIT.fullmatch(unit):
        raise Invalid(f"a unit is 1 to {MAX_UNIT_LENGTH} letters, digits or : . _ -",
                      code="bad_unit")
    if unit == node.settings.unit or unit in node.path:
        raise Invalid(f"{unit} is this node or on its path to the root: it cannot be a child",
                      code="bad_unit")
    return unit


def check_secret(secret: str) -> str:
    if not MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH:
        raise Invalid(f"secret must be {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} characters",
                      code="bad_secret")
    if not _SECRET.fullmatch(secret):
        raise Invalid("secret must be printable ASCII without spaces", code="bad_secret")
    return secret


async def rotate(db: Database, node: NodeCascade, unit: str, secret: str) -> None:
    """Give a child a new secret (stored first, then applied: its live link is dropped
    and must reconnect with the new secret)."""
    check_unit(node, unit)
    check_secret(secret)
    await save_credential(db, unit, secret)
    node.rotate(unit, secret)
    log.info("cascade: credential of child %s rotated", unit)


async def revoke(db: Database, node: NodeCascade, unit: str) -> bool:
    """Revoke a child's credential; False when it had none (nothing changed)."""
    if unit not in node.credentials:
        return False
    await save_credential(db, unit, None)
    node.revoke(unit)
    log.info("cascade: credential of child %s revoked", unit)
    return True
