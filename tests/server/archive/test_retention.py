"""Retention through the real app: the periodic sweep deletes recordings and archive files
past their configured days, each deletion audited (actor none); the administrators see each
meeting's disk use; a recording is refused below the configured free-disk floor."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from rooms.procedure_models import AuditEntry
from server.core import keys
from tests.conftest import Harness, start_harness
from tests.server.archive.support import add_recording, folder
from tests.server.procedure_helpers import close_all, open_demo


@pytest.fixture
async def kept_briefly(tmp_path: Path, harness_database_url: str | None) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path, harness_database_url, recording_retention_days=30,
                                  archive_retention_days=10, retention_interval_s=0.2)
    yield harness
    await harness.close()
    await harness.server.close()


async def test_old_recordings_and_archives_are_deleted_and_audited_and_usage_shown(
        kept_briefly: Harness) -> None:
    h = kept_briefly
    m, people = await open_demo(h, "thuky")
    long_ago = datetime.now(UTC) - timedelta(days=40)
    old, new = folder(h, m, "20261001T080000Z"), folder(h, m, "20261206T080000Z")
    (old / "a-camera-1.webm").write_bytes(b"x" * 5000)
    (new / "a-camera-2.webm").write_bytes(b"y" * 7000)
    await add_recording(h, m, old.name, [], 1000, started=long_ago)
    await add_recording(h, m, new.name, [], 1000)
    archives = h.settings.data_dir / "archives" / str(m)
    archives.mkdir(parents=True)
    stale, fresh = archives / "hopso-meeting-1-old.zip", archives / "hopso-meeting-1-new.zip"
    stale.write_bytes(b"z" * 300)
    fresh.write_bytes(b"w" * 400)
    twenty_days = time.time() - 20 * 86400
    os.utime(stale, (twenty_days, twenty_days))

    async def deletions() -> list[AuditEntry]:
        async with h.server.app[keys.DB].session() as s:
            return list((await s.exec(select(AuditEntry).where(
                AuditEntry.meeting_id == m, AuditEntry.kind.in_(  # type: ignore[attr-defined]
                    ("recording_deleted", "archive_deleted"))))).all())
    for _ in range(100):  # the periodic sweep (every 0.2 s here): deleted, then audited
        if len(await deletions()) == 2:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # a few more sweeps: nothing deleted or audited twice
    rows = await deletions()
    assert not old.exists() and not stale.exists()
    assert new.exists() and fresh.exists()
    found = {(r.kind, r.actor_id): json.loads(r.data_json) for r in rows}
    assert found[("recording_deleted", None)]["directory"] == old.name
    assert found[("recording_deleted", None)]["bytes"] == 5000
    assert found[("archive_deleted", None)] == {"file": stale.name, "bytes": 300,
                                                "retention_days": 10}
    assert len(rows) == 2  # swept again and again: each deleted once

    status, body = await people["thuky"].http.call("GET", "/api/admin/storage")
    assert status == 403 and body["error"]["code"] == "forbidden"
    admin = await h.login("quantri")
    status, usage = await admin.call("GET", "/api/admin/storage")
    assert status == 200, usage
    mine = next(x for x in usage["meetings"] if x["meeting_id"] == m)
    assert (mine["recordings_bytes"], mine["archives_bytes"]) == (7000, 400)
    assert usage["retention"] == {"recording_days": 30, "archive_days": 10,
                                  "recording_min_free_mb": 1024}
    assert usage["disk"]["free_bytes"] > 0
    async with admin.session.get(admin.base + "/admin/storage") as page:
        assert page.status == 200 and str(m) in await page.text()
    await close_all(people)


@pytest.fixture
async def disk_short(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path, None, recording_min_free_mb=10**7)  # 10 TB
    yield harness
    await harness.close()
    await harness.server.close()


async def test_recording_is_refused_below_the_free_disk_floor(disk_short: Harness) -> None:
    m, people = await open_demo(disk_short, "thuky")
    ack = await people["chutri"].emit("recording:start", {"meeting_id": m})
    assert not ack["ok"] and ack["error"]["code"] == "disk_low", ack
    assert "Không đủ dung lượng đĩa" in ack["error"]["message"]
    assert "Not enough free disk space to record" in ack["error"]["message"]
    assert not (disk_short.settings.data_dir / "recordings" / str(m)).exists()
    await close_all(people)
