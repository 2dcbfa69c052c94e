"""Per-user, time-limited TURN credentials for browsers (coturn's TURN REST API scheme).

coturn with `use-auth-secret` / `static-auth-secret=S` accepts username "<expiry unix
time>:<anything>" with password base64(HMAC-SHA1(S, username)) until that time: no account
per person in coturn, and a credential copied out of a browser is worth nothing after the
TTL. Browsers refuse a turn: server without credentials, so turn:/turns: URLs always get
them; stun: URLs never do (STUN needs none). The secret never leaves this module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from server.core.settings import Settings


def turn_credential(secret: str, user_id: int, ttl_s: int,
                    now: float | None = None) -> tuple[str, str]:
    """(username, credential) valid until now + ttl_s for this user."""
    expiry = int(now if now is not None else time.time()) + ttl_s
    username = f"{expiry}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def client_ice_servers(settings: Settings, user_id: int,
                       now: float | None = None) -> list[dict[str, Any]]:
    """The browser's RTCConfiguration.iceServers for this user: one entry of stun: URLs,
    one of turn:/turns: URLs with the user's credential (settings require the secret
    whenever a turn URL is configured)."""
    stun = [u for u in settings.ice_servers if u.startswith("stun:")]
    turn = [u for u in settings.ice_servers if not u.startswith("stun:")]
    servers: list[dict[str, Any]] = []
    if stun:
        servers.append({"urls": stun})
    if turn and settings.turn_secret:
        username, credential = turn_credential(settings.turn_secret, user_id,
                                               settings.turn_ttl_s, now)
        servers.append({"urls": turn, "username": username, "credential": credential})
    return servers
