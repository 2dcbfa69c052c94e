"""Three in-process Hopso nodes on loopback ports (province <- city <- ward), each with its
own SQLite database and the demo data, for tests of a meeting across the tree. Faster than
real processes (tests/server/cascade/test_servers.py); the same app, links and databases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rooms.remote_votes import RemoteVoteTally
from server.cascade.keys import NODE, STATE
from server.cascade.link import NodeCascade
from server.cascade.parent_link import ParentLink
from server.cascade.state import MeetingState
from server.core import keys
from server.core.settings import NodeSettings
from testkit.province import until, within
from tests.conftest import Client, Harness, start_harness

CITY_SECRET = "city-secret-0123456789"
WARD_SECRET = "ward-secret-0123456789"
T = TypeVar("T")


@dataclass
class Tree:
    province: Harness
    city: Harness
    ward: Harness

    @property
    def nodes(self) -> tuple[Harness, Harness, Harness]:
        return self.province, self.city, self.ward


def node(h: Harness) -> NodeCascade:
    return h.server.app[NODE]


def state(h: Harness) -> MeetingState:
    return h.server.app[STATE]


async def cut_link(h: Harness) -> None:
    """`h`'s link to its parent stops, as when the WAN is cut; `restore_link` brings it back."""
    link = node(h).parent
    assert link is not None
    await link.stop()


def restore_link(h: Harness) -> None:
    """A new link to the parent, started as the node starts its own."""
    cascade = node(h)
    cascade.parent = ParentLink(cascade)
    cascade.parent.start()


@asynccontextmanager
async def tree(tmp_path: Path) -> AsyncIterator[Tree]:
    # Starts and closes are bounded and named, as the tests' waits (testkit.province.within):
    # a node that hangs there fails saying which, not in pytest's timeout.
    async with within(60, "the province starting"):
        province = await start_harness(tmp_path / "province", None, node=NodeSettings(
            "province", children={"city": CITY_SECRET}))
    async with within(60, "the city starting"):
        city = await start_harness(tmp_path / "city", None, node=NodeSettings(
            "city", parent_url=province.base, secret=CITY_SECRET,
            children={"ward": WARD_SECRET}))
    async with within(60, "the ward starting"):
        ward = await start_harness(tmp_path / "ward", None, node=NodeSettings(
            "ward", parent_url=city.base, secret=WARD_SECRET))
    found = Tree(province, city, ward)
    try:
        yield found
    finally:
        stuck = []
        for name, h in (("ward", ward), ("city", city), ("province", province)):
            try:  # children first; one stuck close does not leave the others open
                async with within(30, f"the {name} closing"):
                    await h.close()
                    await h.server.close()
            except AssertionError as exc:
                stuck.append(str(exc))
        if stuck:
            raise AssertionError("; ".join(stuck))


async def cascaded_meeting(t: Tree, seats: dict[str, int] | None = None
                           ) -> tuple[Client, int, str, int, int]:
    """The province chair opens their first meeting and invites the city and the ward:
    (chair, province meeting id, key, city mirror id, ward mirror id)."""
    chair = await t.province.login("chutri")
    _, mine = await chair.call("GET", "/api/meetings")
    meeting_id = mine["meetings"][0]["id"]
    assert (await chair.call("POST", f"/api/meetings/{meeting_id}/open"))[0] == 200
    status, body = await chair.call("PUT", f"/api/meetings/{meeting_id}/nodes", {
        "nodes": ["city", "ward"], "seats": seats or {"city": 5, "ward": 2}})
    assert status == 200, body
    key = f"province/{meeting_id}"

    async def mirrored(h: Harness) -> int | None:
        return await state(h).meeting_of(key)
    city_id = await until(lambda: mirrored(t.city), 10, "the city mirrors the meeting")
    ward_id = await until(lambda: mirrored(t.ward), 10, "the ward mirrors the meeting")
    return chair, meeting_id, key, city_id, ward_id


async def following(h: Harness, key: str, seq: int) -> None:
    """Wait until node `h` has stored and applied the meeting's journal up to `seq`."""
    async def there() -> bool:
        journal = state(h).journal
        return await journal.last(key) >= seq and journal.applied(key) >= seq
    await until(there, 10, f"journal {key} #{seq} at {node(h).settings.unit}")


async def ward_tally(t: Tree, vote_id: int) -> RemoteVoteTally | None:
    """The ward's tally of the province's vote, as the province holds it."""
    async with t.province.server.app[keys.DB].session() as s:
        return await s.get(RemoteVoteTally, (vote_id, "ward"))
