"""Server-rendered pages (server/core/pages.py) whose markup comes from shared macros: the
meeting screen's console sections, the admin pages' create forms."""

from __future__ import annotations

import re

from tests.conftest import Harness
from tests.server.core.test_realtime import demo_meeting_id

HTML = {"Accept": "text/html"}


async def test_every_console_section_is_titled_by_its_own_heading(hopso: Harness) -> None:
    m = await demo_meeting_id(hopso)
    chair = await hopso.login("chutri")
    status, page = await chair.call("GET", f"/meetings/{m}", headers=HTML)
    assert status == 200
    sections = re.findall(r'<section class="card console-panel[^"]*" id="console-(\w+)" '
                          r'tabindex="0" aria-labelledby="console-(\w+)-title"', page)
    names = ["agenda", "floor", "votes", "attendance", "minutes", "chat"]
    assert sections == [(n, n) for n in names]
    for name in names:
        assert page.count(f'<h2 id="console-{name}-title">') == 1, name
    for part in ("agenda", "agenda-tools", "floor-tools", "floor", "vote-tools", "votes",
                 "receipt-tools", "attendance", "attendance-tools", "minutes-tools", "minutes"):
        assert page.count(f'<div data-part="{part}"></div>') == 1, part
    assert f'id="console-chat" tabindex="0" aria-labelledby="console-chat-title" ' \
           f'data-meeting-id="{m}" data-role="chair"' in page


async def test_the_admin_pages_create_forms_post_to_the_api(hopso: Harness) -> None:
    admin = await hopso.login("quantri")
    for path, urls in (("/admin/units", ("/api/units", "/api/sites")),
                       ("/admin/users", ("/api/users",))):
        status, page = await admin.call("GET", path, headers=HTML)
        assert status == 200, path
        posts = re.findall(r'<form class="api-form" data-method="POST" data-url="([^"]+)">', page)
        assert tuple(posts) == urls, path
        assert page.count('<button type="submit" class="primary">') == len(urls), path
