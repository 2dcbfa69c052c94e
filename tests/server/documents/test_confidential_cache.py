"""Confidential page images come from a per-process cache when the same viewer fetches the
same image again in the same time bucket, and never carry another viewer's watermark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from documents import render
from rooms.models import User
from rooms.users import find_user
from server.core import keys
from tests.conftest import Harness
from tests.server.documents_support import demo_meeting_id, fetch, make_pdf, runtime, upload_ready


class RenderSpy:
    """Wraps render.render_view: which watermark lines produced which JPEG."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, int, list[str]]] = []  # (page, width, lines)
        self.lines_of: dict[bytes, list[str]] = {}
        original = render.render_view

        async def spy(pool: Any, path: Any, page: int, width: int = 1536, **kw: Any) -> Any:
            out = await original(pool, path, page, width, **kw)
            lines = list(kw.get("watermark_lines") or [])
            self.calls.append((page, width, lines))
            self.lines_of[out.jpeg] = lines
            return out

        monkeypatch.setattr(render, "render_view", spy)


async def test_confidential_pages_are_cached_per_viewer(
        hopso_sqlite: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hopso = hopso_sqlite
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=3), confidential="1")
    spy = RenderSpy(monkeypatch)
    names = {u: hopso.logins[u].full_name for u in ("daibieu", "daibieu2")}
    a, b = await hopso.login("daibieu"), await hopso.login("daibieu2")
    pages = f"/api/documents/{doc['id']}/pages"

    async def get(client: Any, path: str) -> bytes:
        status, kind, body, headers = await fetch(client, path)
        assert status == 200 and kind == "image/jpeg" and headers["Cache-Control"] == "no-store"
        return body

    # A flips 0 → 1 → 0 → 1: two renders, the flips back come from the cache.
    first = [await get(a, f"{pages}/{p}") for p in (0, 1, 0, 1)]
    assert [c[0] for c in spy.calls] == [0, 1]
    assert first[2] == first[0] and first[3] == first[1]
    assert names["daibieu"] in spy.calls[0][2][0]

    # B asks for the very same page and width: rendered again, with B's name only.
    b_page = await get(b, f"{pages}/0")
    assert len(spy.calls) == 3 and b_page != first[0]
    assert names["daibieu2"] in spy.lines_of[b_page][0]
    assert names["daibieu"] not in spy.lines_of[b_page][0]
    assert await get(b, f"{pages}/0") == b_page and len(spy.calls) == 3
    assert names["daibieu"] in spy.lines_of[await get(a, f"{pages}/0")][0]

    # Another width or the thumbnail is another image.
    await get(a, f"{pages}/0?width=768")
    await get(a, f"/api/documents/{doc['id']}/thumbs/0")
    assert len(spy.calls) == 5

    # Even a second user with A's exact name and unit never gets A's image (the user id is
    # part of the key): it is rendered for the twin, even though it looks the same.
    async with hopso.server.app[keys.DB].session() as s:
        user_a, user_b = await find_user(s, "daibieu"), await find_user(s, "daibieu2")
        assert user_a is not None and user_b is not None
        twin: User = user_b
        twin.full_name, twin.unit_id = user_a.full_name, user_a.unit_id
        s.add(twin)
    await get(b, f"{pages}/1")
    assert len(spy.calls) == 6 and spy.calls[-1][0] == 1

    # A renamed viewer gets a fresh render with the new name.
    async with hopso.server.app[keys.DB].session() as s:
        renamed = await find_user(s, "daibieu")
        assert renamed is not None
        renamed.full_name = "Lê Minh Tuấn (đã đổi tên)"
        s.add(renamed)
    renamed_page = await get(a, f"{pages}/1")
    assert len(spy.calls) == 7 and "(đã đổi tên)" in spy.lines_of[renamed_page][0]

    # The next time bucket renders again (a fresh time on the watermark).
    rt = runtime(hopso)
    bucket = rt.watermark_bucket()
    monkeypatch.setattr(rt, "watermark_bucket", lambda: bucket + 1)
    await get(a, f"{pages}/1")
    assert len(spy.calls) == 8 and spy.calls[-1][0] == 1
    assert rt.page_images.hits == 4 and rt.page_images.size <= rt.page_images.max_bytes


async def test_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import start_harness

    hopso = await start_harness(tmp_path, None, confidential_cache_mb=0)
    try:
        meeting_id = await demo_meeting_id(hopso)
        doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=1),
                                 confidential="1")
        spy = RenderSpy(monkeypatch)
        a = await hopso.login("daibieu")
        for _ in range(2):
            status, _, _, _ = await fetch(a, f"/api/documents/{doc['id']}/pages/0")
            assert status == 200
        assert len(spy.calls) == 2 and len(runtime(hopso).page_images) == 0
    finally:
        await hopso.close()
        await hopso.server.close()
