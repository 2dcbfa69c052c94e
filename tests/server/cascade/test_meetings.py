"""server/cascade/meetings.py: meeting keys a child node names are parsed like every id."""

from __future__ import annotations

import logging

import pytest

from server.cascade.meetings import DbDirectory
from server.core import keys
from tests.conftest import Harness
from tests.server.core.test_realtime import demo_meeting_id


async def test_a_key_with_odd_digits_or_a_huge_id_names_no_meeting(
        hopso: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """"¹".isdigit() is true and int("¹") raises; 10**17 overflows PostgreSQL's INTEGER."""
    directory = DbDirectory(hopso.server.app[keys.DB], "province")
    meeting_id = await demo_meeting_id(hopso)
    assert await directory.router_for(f"province/{meeting_id}") is not None
    for number in ("¹", "١", "１", str(2**31), str(10**17), "", "-1"):
        assert await directory.router_for(f"province/{number}") is None
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
