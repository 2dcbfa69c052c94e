"""A meeting offered to child nodes reaches them when it is offered, not at their next ping:
the parent tells its linked children (`offers` on /node) when an invitation changes, and a
city that mirrored a change passes the hint on to its wards (server/cascade/link.py,
parent_link.py). Before, each level found it at its next ping, up to PING_INTERVAL_S (2 s)
later: up to ~4 s from the province to a ward."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from server.cascade import parent_link
from tests.conftest import Harness
from tests.server.cascade.tree import node, state, tree, until


async def test_an_invitation_reaches_the_city_and_the_ward_without_waiting_for_a_ping(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parent_link, "PING_INTERVAL_S", 60.0)  # no ping round meanwhile
    async with tree(tmp_path) as t:
        for h in (t.city, t.ward):
            link = node(h).parent
            assert link is not None
            await link.wait_connected(20)
        chair = await t.province.login("chutri")
        _, mine = await chair.call("GET", "/api/meetings")
        meeting_id = mine["meetings"][0]["id"]
        assert (await chair.call("POST", f"/api/meetings/{meeting_id}/open"))[0] == 200
        started = time.monotonic()
        status, body = await chair.call("PUT", f"/api/meetings/{meeting_id}/nodes", {
            "nodes": ["city", "ward"], "seats": {"city": 5, "ward": 2}})
        assert status == 200, body
        key = f"province/{meeting_id}"
        for unit, h in (("city", t.city), ("ward", t.ward)):
            async def mirrored(h: Harness = h) -> int | None:
                return await state(h).meeting_of(key)
            await until(mirrored, 10, f"the {unit} mirrors it")
            took = time.monotonic() - started
            assert took < 3, f"mirrored at the {unit} after {took:.2f} s"
