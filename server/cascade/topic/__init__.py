"""The topics of a meeting's state that cross node links (server/cascade/topics.py): each
module has `install(app, state)`, which registers its topics on the node's `MeetingState`
and subscribes to the bus events it turns into journal entries and reports."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from server.cascade.state import MeetingState
from server.cascade.topic import documents, floor, ink, minutes, presenter, votes

Install = Callable[[web.Application, MeetingState], None]

# One line per topic module (kept apart so that adding one touches nothing else).
MODULES: list[Install] = []
MODULES += [documents.install, presenter.install, ink.install]
MODULES += [floor.install, votes.install, minutes.install]


def install(app: web.Application, state: MeetingState) -> None:
    for module in MODULES:
        module(app, state)
