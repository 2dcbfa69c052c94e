"""Which meetings a node link may carry: the parent's view of its children's scope and the
child's mirror of what its parent offers (server/cascade/meetings.py reads them from the
database)."""

from __future__ import annotations

from typing import Any

from server.cascade.schemas import HeadcountEntry


class MeetingDirectory:
    """Which meetings a link may carry. A meeting's link key is
    ``"<owner node unit>/<owner's meeting id>"`` on every node. The server's directory
    (server/cascade/meetings.py) reads them from the database. This base offers nothing and
    lets a child act on nothing; `OpenDirectory` (tests, benchmarks) lets it act on any."""

    async def router_for(self, key: str) -> str | None:
        """The local router id of a meeting a child asks to join; None if unknown here."""
        return None

    async def out_of_scope(self, child: str, keys: set[str]) -> set[str]:
        """Of `keys`, those the child `child` may not act on now: not a live meeting here,
        or one that does not invite it (any more)."""
        return set(keys)

    async def ended_inviting(self, child: str, keys: set[str]) -> set[str]:
        """Of `keys`, the meetings here that ended (no longer live) and invite `child`: its
        reports made before the end still go to their owner (reports.py)."""
        return set()

    async def out_of_scope_each(self, asked: dict[str, set[str]]) -> dict[str, set[str]]:
        """`out_of_scope` for several children at once: child -> its keys out of scope."""
        return {child: await self.out_of_scope(child, keys) for child, keys in asked.items()}

    async def offered(self, child: str) -> list[dict[str, Any]]:
        """Meetings this node offers the child `child`: ``{"key", "title", ...}``."""
        return []

    async def mirror(self, offered: list[dict[str, Any]]) -> bool:
        """The parent's offered meetings, to mirror locally; whether what this node offers
        its own children may have changed."""
        return False

    async def headcounts(self) -> list[dict[str, Any]]:
        """Attendance of this node's subtree per mirrored meeting, for the parent:
        ``{"key", "members", "present"}``."""
        return []

    async def report(self, child: str, counts: list[HeadcountEntry]) -> None:
        """A child's complete headcounts (``[]``: it left, forget them), all within its
        scope already; NodeError (changing nothing) if they break the rule."""


class OpenDirectory(MeetingDirectory):
    """Tests and benchmarks without a database: a key is a router of the same name, and
    every child may act on every meeting."""

    async def router_for(self, key: str) -> str | None:
        return key

    async def out_of_scope(self, child: str, keys: set[str]) -> set[str]:
        return set()
