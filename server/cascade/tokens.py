"""Node credentials on the wire: a child proves its unit's secret with a short-lived token.

``token`` is ``<unix time>.<hex HMAC-SHA256(secret, "<unit>|<unix time>")>``: the secret
itself never crosses the wire (TLS in production), and a token is accepted within
TOKEN_MAX_SKEW_S of the parent's clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Any

TOKEN_MAX_SKEW_S = 120
# What a token is, before any arithmetic: "<unix time>.<64 hex digits>", ASCII only
# (hmac.compare_digest raises TypeError on a non-ASCII str, int() accepts other scripts'
# digits and "1_000").
TOKEN = re.compile(r"[0-9]{1,12}\.[0-9a-f]{64}", re.ASCII)


def make_token(unit: str, secret: str, now: float | None = None) -> str:
    stamp = int(time.time() if now is None else now)
    mac = hmac.new(secret.encode(), f"{unit}|{stamp}".encode(), hashlib.sha256).hexdigest()
    return f"{stamp}.{mac}"


def check_token(unit: str, token: Any, secret: str, now: float | None = None) -> str | None:
    """None if valid, else the reason. Never raises, whatever `token` is."""
    if not isinstance(token, str) or len(token) > 80 or not TOKEN.fullmatch(token):
        return "malformed token"
    stamp_text, _, mac = token.partition(".")
    stamp = int(stamp_text)
    if abs((time.time() if now is None else now) - stamp) > TOKEN_MAX_SKEW_S:
        return "stale token (check the clocks)"
    want = hmac.new(secret.encode(), f"{unit}|{stamp}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want.encode(), mac.encode()):
        return "wrong credential"
    return None
