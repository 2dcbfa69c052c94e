"""Recordings as the recorder leaves them, for the archive's tests: WebM track files stamped
on the recording's clock (made by ffmpeg: VP8 of one colour, Opus tone), and the recording's
row and timeline written through rooms/recording_log.py."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rooms import recording_log
from server.core import keys
from tests.conftest import Harness


def track(path: Path, seconds: float, offset: float, color: str | None = None) -> Path:
    """A VP8 camera track of `color` (else an Opus tone) beginning `offset` s into the
    recording, like media/recorder.py's files."""
    source = (["-f", "lavfi", "-i", f"color=c={color}:s=160x120:r=15:d={seconds}",
               "-c:v", "libvpx", "-b:v", "150k", "-deadline", "realtime"] if color else
              ["-f", "lavfi", "-i", f"sine=f=440:d={seconds}", "-c:a", "libopus"])
    subprocess.run(["ffmpeg", "-v", "error", "-y", *source, "-output_ts_offset", str(offset),
                    str(path)], check=True, timeout=60)
    return path


async def add_recording(h: Harness, meeting_id: int, directory: str,
                        entries: list[tuple[int, str, dict[str, Any]]], stopped_ms: int,
                        started: datetime | None = None) -> int:
    """The recording's row and its timeline (offset ms, kind, data); stopped at `stopped_ms`."""
    started = started or datetime.now(UTC) - timedelta(seconds=stopped_ms / 1000)
    async with h.server.app[keys.DB].session() as s:
        row = await recording_log.open_recording(s, meeting_id, directory, started, None)
        assert row.id is not None
        await recording_log.add(s, row.id, started, 0, "recording_started", {})
        for offset, kind, data in entries:
            await recording_log.add(s, row.id, started + timedelta(milliseconds=offset),
                                    offset, kind, data)
        await recording_log.add(s, row.id, started + timedelta(milliseconds=stopped_ms),
                                stopped_ms, "recording_stopped", {"files": []})
        await recording_log.close_recording(s, row.id,
                                            started + timedelta(milliseconds=stopped_ms))
        await s.commit()
        return row.id


def folder(h: Harness, meeting_id: int, directory: str) -> Path:
    path = h.settings.data_dir / "recordings" / str(meeting_id) / directory
    path.mkdir(parents=True, exist_ok=True)
    return path
