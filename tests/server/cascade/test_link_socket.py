"""A node link's TCP sockets get a low minimum RTO (server/cascade/link_socket.py, issue 13's
page turns): a push lost on the WAN is sent again after tens of milliseconds, not 200."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from server.core.settings import NodeConfigError, NodeSettings
from testkit.netem import in_namespace, namespace_unavailable
from testkit.province import until
from tests.conftest import Harness, start_harness

ROOT = Path(__file__).resolve().parents[3]
CITY_SECRET = "city-secret-0123456789"


@asynccontextmanager
async def linked(tmp_path: Path, city_rto_min_ms: int) -> AsyncIterator[tuple[Any, Any]]:
    """A province (its default settings) and a city linked to it; yields what each one's
    administrator sees of that link: (the province's child entry, the city's parent)."""
    province = await start_harness(tmp_path / "province", None, node=NodeSettings(
        "province", children={"city": CITY_SECRET}))
    city: Harness | None = None
    try:
        city = await start_harness(tmp_path / "city", None, node=NodeSettings(
            "city", parent_url=province.base, secret=CITY_SECRET,
            link_rto_min_ms=city_rto_min_ms))
        admins = await province.login("quantri"), await city.login("quantri")

        async def both() -> tuple[Any, Any] | None:
            _, above = await admins[0].call("GET", "/api/admin/nodes")
            _, below = await admins[1].call("GET", "/api/admin/nodes")
            child = next((c for c in above["children"] if c["state"] == "connected"), None)
            parent = below["parent"]
            return (child, parent) if child and parent["state"] == "connected" else None
        yield await until(both, 20, "the city linked to the province")
    finally:
        for h in (city, province):
            if h is not None:
                await h.close()
                await h.server.close()


async def test_both_ends_of_a_node_link_lower_its_minimum_rto_each_by_its_own_setting(
        tmp_path: Path) -> None:
    async with linked(tmp_path, city_rto_min_ms=0) as (child, parent):
        assert child["tcp_rto_min_ms"] == 20  # the province's default, on its accepted socket
        # 0 at the city: its client socket keeps the system's (net.ipv4.tcp_rto_min_us)
        system = int(Path("/proc/sys/net/ipv4/tcp_rto_min_us").read_text()) // 1000 \
            if Path("/proc/sys/net/ipv4/tcp_rto_min_us").exists() else 200
        assert parent["tcp_rto_min_ms"] == system


async def test_a_minimum_the_kernel_refuses_leaves_the_systems_said_once_and_links(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # 1 ms is under the kernel's floor of 2 jiffies whatever its HZ (up to 1000)
    async with linked(tmp_path, city_rto_min_ms=1) as (child, parent):
        assert child["tcp_rto_min_ms"] == 20
        assert parent["tcp_rto_min_ms"] not in (None, 1)  # the system's, read back
    refusals = [r for r in caplog.records if "refuses a link socket's minimum RTO" in r.message]
    assert len(refusals) <= 1  # once per process (an earlier test may have said it)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("value", ["-1", "201", "20ms", "1e3"])
def test_a_minimum_rto_outside_0_to_200_ms_is_refused_at_start(value: str) -> None:
    with pytest.raises(NodeConfigError, match="HOPSO_NODE_LINK_RTO_MIN_MS"):
        NodeSettings.from_env({"HOPSO_NODE_UNIT": "ward:a",
                               "HOPSO_NODE_LINK_RTO_MIN_MS": value})


def test_the_minimum_rto_defaults_to_20_ms_and_0_leaves_the_systems() -> None:
    default = NodeSettings.from_env({"HOPSO_NODE_UNIT": "ward:a"})
    off = NodeSettings.from_env({"HOPSO_NODE_UNIT": "ward:a", "HOPSO_NODE_LINK_RTO_MIN_MS": "0"})
    assert default is not None and default.link_rto_min_ms == 20
    assert off is not None and off.link_rto_min_ms == 0


def test_a_lone_segment_lost_on_a_tuned_link_socket_arrives_within_tens_of_ms() -> None:
    """Real loss (iptables drops the segment once) in a loopback-only namespace; the same
    connection without the setting waits out the system's 200 ms."""
    reason = namespace_unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must emulate links: {reason}")
        pytest.skip(reason)
    run = subprocess.run(
        in_namespace([sys.executable, "-m", "tests.server.cascade.lone_segment_probe"]),
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    probed = json.loads(run.stdout.strip().splitlines()[-1])
    assert probed["tuned_rto_min_ms"] == 20, probed
    assert max(probed["tuned_ms"]) < 100, probed  # 2·SRTT (~0 on loopback) + 20 ms, in jiffies
    assert min(probed["system_ms"]) >= 190, probed  # the probe timeout of a lone segment
