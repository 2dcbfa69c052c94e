"""Node settings and link credentials of server/cascade/link.py (no I/O)."""

from __future__ import annotations

import time

import pytest

from server.cascade.tokens import check_token, make_token
from server.core.settings import NodeConfigError, NodeSettings

SECRET = "s" * 20


def test_node_settings_from_env() -> None:
    assert NodeSettings.from_env({}) is None
    node = NodeSettings.from_env({
        "HOPSO_NODE_UNIT": "city:dong-hoi", "HOPSO_PARENT_URL": "https://tinh.example.vn",
        "HOPSO_NODE_SECRET": SECRET,
        "HOPSO_NODE_CHILDREN": f"ward:1={'a' * 16}, ward:2={'b' * 16}"})
    assert node is not None
    assert node.parent_url == "https://tinh.example.vn"
    assert dict(node.children) == {"ward:1": "a" * 16, "ward:2": "b" * 16}


@pytest.mark.parametrize("env, message", [
    ({"HOPSO_PARENT_URL": "tinh.example.vn", "HOPSO_NODE_SECRET": SECRET}, "http"),
    ({"HOPSO_PARENT_URL": "https://tinh.example.vn"}, "HOPSO_NODE_SECRET"),
    ({"HOPSO_PARENT_URL": "https://tinh.example.vn", "HOPSO_NODE_SECRET": "short"},
     "16+"),
    ({"HOPSO_NODE_CHILDREN": "ward:1"}, "unit=secret"),
    ({"HOPSO_NODE_CHILDREN": "ward:1=short"}, "unit=secret"),
    ({"HOPSO_NODE_CHILDREN": f"city={SECRET}"}, "own child"),
    ({"HOPSO_PARENT_URL": "http://tinh.example.vn", "HOPSO_NODE_SECRET": SECRET,
      "HOPSO_PARENT_CA": "/etc/hostname"}, "https://"),
    ({"HOPSO_PARENT_URL": "https://tinh.example.vn", "HOPSO_NODE_SECRET": SECRET,
      "HOPSO_PARENT_CA": "/nonexistent/ca.pem"}, "not found"),
])
def test_bad_node_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(NodeConfigError, match=message):
        NodeSettings.from_env({"HOPSO_NODE_UNIT": "city", **env})


def test_tokens() -> None:
    now = time.time()
    token = make_token("ward:1", SECRET, now)
    assert check_token("ward:1", token, SECRET, now) is None
    assert check_token("ward:1", token, SECRET, now + 60) is None
    assert check_token("ward:1", token, SECRET, now + 600) == "stale token (check the clocks)"
    assert check_token("ward:2", token, SECRET, now) == "wrong credential"  # another unit
    assert check_token("ward:1", token, "t" * 20, now) == "wrong credential"
    assert check_token("ward:1", "garbage", SECRET, now) == "malformed token"
    assert check_token("ward:1", None, SECRET, now) == "malformed token"
    assert SECRET not in token
