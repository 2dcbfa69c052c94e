"""The organisational tree: create, rename, re-parent and merge, each leaving history."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.errors import Conflict, Invalid, NotFound
from rooms.models import Site, Unit, UnitChange, UnitEvent, UnitKind, User


@dataclass
class UnitNode:
    unit: Unit
    children: list[UnitNode] = field(default_factory=list)
    sites: list[Site] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.unit.id, "name": self.unit.name, "kind": self.unit.kind.value,
            "parent_id": self.unit.parent_id,
            "sites": [{"id": s.id, "name": s.name} for s in self.sites],
            "children": [c.to_dict() for c in self.children],
        }


async def get_unit(session: AsyncSession, unit_id: int) -> Unit:
    unit = await session.get(Unit, unit_id)
    if unit is None or not unit.active:
        raise NotFound(f"unit {unit_id} not found")
    return unit


def _clean_name(name: str) -> str:
    name = " ".join(name.split())
    if not 1 <= len(name) <= 200:
        raise Invalid("name must be 1 to 200 characters")
    return name


async def create_unit(session: AsyncSession, name: str, kind: UnitKind,
                      parent_id: int | None, by_user_id: int | None = None) -> Unit:
    if parent_id is not None:
        await get_unit(session, parent_id)
    unit = Unit(name=_clean_name(name), kind=kind, parent_id=parent_id)
    session.add(unit)
    await session.flush()
    assert unit.id is not None
    session.add(UnitEvent(unit_id=unit.id, change=UnitChange.created, new_value=unit.name,
                          by_user_id=by_user_id))
    return unit


async def rename_unit(session: AsyncSession, unit_id: int, name: str,
                      by_user_id: int | None = None) -> Unit:
    unit = await get_unit(session, unit_id)
    old, unit.name = unit.name, _clean_name(name)
    session.add(UnitEvent(unit_id=unit_id, change=UnitChange.renamed, old_value=old,
                          new_value=unit.name, by_user_id=by_user_id))
    return unit


async def _ancestors(session: AsyncSession, unit_id: int | None) -> list[int]:
    chain: list[int] = []
    while unit_id is not None:
        if unit_id in chain:
            break
        chain.append(unit_id)
        parent = await session.get(Unit, unit_id)
        unit_id = parent.parent_id if parent else None
    return chain


async def reparent_unit(session: AsyncSession, unit_id: int, parent_id: int | None,
                        by_user_id: int | None = None) -> Unit:
    unit = await get_unit(session, unit_id)
    if parent_id is not None:
        await get_unit(session, parent_id)
        if unit_id in await _ancestors(session, parent_id):
            raise Conflict("a unit cannot be moved under itself or its descendants")
    old, unit.parent_id = unit.parent_id, parent_id
    session.add(UnitEvent(unit_id=unit_id, change=UnitChange.reparented,
                          old_value=str(old) if old else None,
                          new_value=str(parent_id) if parent_id else None, by_user_id=by_user_id))
    return unit


async def merge_unit(session: AsyncSession, unit_id: int, into_id: int,
                     by_user_id: int | None = None) -> Unit:
    """Merge unit_id into into_id: children, sites and users move; the old unit stays as history."""
    if unit_id == into_id:
        raise Invalid("a unit cannot be merged into itself")
    unit, target = await get_unit(session, unit_id), await get_unit(session, into_id)
    if unit_id in await _ancestors(session, into_id):
        raise Conflict("a unit cannot be merged into its own descendant")
    for child in (await session.exec(select(Unit).where(Unit.parent_id == unit_id))).all():
        child.parent_id = into_id
    for site in (await session.exec(select(Site).where(Site.unit_id == unit_id))).all():
        site.unit_id = into_id
    for user in (await session.exec(select(User).where(User.unit_id == unit_id))).all():
        user.unit_id = into_id
    unit.active, unit.merged_into_id = False, into_id
    session.add(UnitEvent(unit_id=unit_id, change=UnitChange.merged, old_value=unit.name,
                          new_value=str(into_id), by_user_id=by_user_id))
    return target


async def unit_history(session: AsyncSession, unit_id: int) -> list[UnitEvent]:
    if await session.get(Unit, unit_id) is None:
        raise NotFound(f"unit {unit_id} not found")
    rows = await session.exec(select(UnitEvent).where(UnitEvent.unit_id == unit_id)
                              .order_by(UnitEvent.id))  # type: ignore[arg-type]
    return list(rows.all())


async def unit_tree(session: AsyncSession) -> list[UnitNode]:
    units = (await session.exec(select(Unit).where(Unit.active == True))).all()  # noqa: E712
    sites = (await session.exec(select(Site).where(Site.active == True))).all()  # noqa: E712
    nodes = {u.id: UnitNode(u) for u in units}
    for site in sites:
        if site.unit_id in nodes:
            nodes[site.unit_id].sites.append(site)
    roots: list[UnitNode] = []
    for node in sorted(nodes.values(), key=lambda n: (n.unit.name, n.unit.id or 0)):
        parent = nodes.get(node.unit.parent_id)
        (parent.children if parent else roots).append(node)
    return roots


async def create_site(session: AsyncSession, name: str, unit_id: int) -> Site:
    await get_unit(session, unit_id)
    site = Site(name=_clean_name(name), unit_id=unit_id)
    session.add(site)
    await session.flush()
    return site


async def get_site(session: AsyncSession, site_id: int) -> Site:
    site = await session.get(Site, site_id)
    if site is None or not site.active:
        raise NotFound(f"site {site_id} not found")
    return site
