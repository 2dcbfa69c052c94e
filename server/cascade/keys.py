"""The app keys of the cascade feature (server/cascade/feature.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from server.cascade.link import NodeCascade
    from server.cascade.state import MeetingState

# Set only on a node configured for the cascade (HOPSO_NODE_UNIT); absent otherwise, so it
# is not among the feature's `provides` and readers use app.get(NODE).
NODE: web.AppKey[NodeCascade] = web.AppKey("node")
# The node's meeting state beyond media (server/cascade/state.py); set with NODE.
STATE: web.AppKey[MeetingState] = web.AppKey("meeting_state")
