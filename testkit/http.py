"""A logged-in person's HTTP client (cookie jar + CSRF header), for in-process test servers
(tests/conftest.py's Harness) and for real `run.py` nodes (testkit/province.py) alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Client:
    """A browser-like HTTP client: its cookies, and the CSRF token its login answered."""

    session: aiohttp.ClientSession
    base: str
    csrf: str = ""
    user: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, base: str) -> Client:
        """Not logged in yet, with a cookie jar that keeps 127.0.0.1's cookies."""
        return cls(aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)), base)

    async def call(self, method: str, path: str, json: Any = None, **kw: Any
                   ) -> tuple[int, Any]:
        """(status, body): the JSON answer decoded, any other answer as text."""
        headers = {"X-CSRF-Token": self.csrf, "Accept": "application/json", **kw.pop("headers", {})}
        async with self.session.request(method, self.base + path, json=json, headers=headers,
                                        allow_redirects=False, **kw) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body

    def cookie_header(self) -> str:
        return "; ".join(f"{c.key}={c.value}" for c in self.session.cookie_jar)

    async def close(self) -> None:
        await self.session.close()
