"""The Đồng Hới rehearsal as a test (issue 13, item 7): one meeting from the province to
the tablets of 3 wards, on real processes over impaired links (tests/server/cascade/
rehearsal_run.py). Each step asserts what a person at each node would see."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
OUTAGE_S = 10


def _namespace_reason() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare/ip missing"
    if subprocess.run(["unshare", "-n", "true"], check=False, capture_output=True).returncode:
        return "no permission to create a network namespace"
    if shutil.which("iptables-legacy") is None and shutil.which("iptables") is None:
        return "iptables missing (Debian package iptables: the links' loss)"
    return None


def rehearse() -> dict[str, Any]:
    """In a loopback-only namespace where the links' loss can be applied; elsewhere (no
    root) as a plain process, without loss, which the result says; CI must apply it."""
    reason = _namespace_reason()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"the rehearsal must run with its links' loss in CI: {reason}")
    # A 10 s outage: the ward's link retries every second at most (server/cascade/
    # parent_link.py), so it goes through the same loss and catch-up as issue 13's 30 s, which
    # bench/province.py measures.
    command = f"{sys.executable} -m tests.server.cascade.rehearsal_run {OUTAGE_S}"
    argv = (["sh", "-c", command] if reason else
            ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {command}"])
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900,
                         check=False, env={**os.environ, "HOPSO_FAST_HASH": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    # What the harness opened is closed at its exit (the chair's tablet was not: its socket
    # client's aiohttp session, "Unclosed client session" on stderr).
    assert "Unclosed" not in run.stderr, run.stderr[-3000:]
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    if reason is None:
        assert result["loss_not_applied"] is None, result["loss_not_applied"]
    return result


@pytest.mark.timeout(900)  # five servers and an outage, on a shared 2-core box
def test_one_meeting_reaches_every_ward_through_weak_links_and_an_outage() -> None:
    r = rehearse()
    units = r["units"]
    # Publish: page 1 is a real render on every tablet at every node; the file crossed each
    # ward link once whether 10 readers or 1 read it there (the file and its page 1 image;
    # a second copy would double it: the 1.1 target is bench/province.py's); search finds
    # page 7 at every node.
    doc = r["document"]
    assert doc["first_page_max_s"] < 60, doc
    assert doc["link_bytes_ratio_10_readers"] < 1.5, doc
    assert doc["link_bytes_ratio_1_reader"] < 1.5, doc
    assert r["search"] == {unit: [6] for unit in units}, r["search"]
    # The presenter's pages reached every tablet (the turns waited for each).
    assert r["turns"]["samples"] == 3 * 15
    # A ward delegate asked, was marked with the ward, spoke, and the city saw it.
    speak = r["speak"]
    assert speak["queued"]["origin"] == units[2], speak["queued"]
    ward_speaker = speak["queued"]["name"]
    assert speak["holder_at_ward"]["name"] == ward_speaker
    assert speak["holder_at_city"]["name"] == ward_speaker
    # Votes: every ballot at every node counted at the province; every tablet saw the end.
    for round_ in ("open_vote", "secret_vote"):
        vote = r[round_]
        assert vote["total"] == 15
        assert sum(vote["province"]["result"]["totals"]) == 15, vote["province"]["result"]
        assert len(vote["tablets"]) == 15
        for seen in vote["tablets"].values():
            assert seen["status"] == "closed"
    secret_nodes = r["secret_vote"]["province"]["result"].get("nodes") or []
    assert all("voters" not in n for n in secret_nodes), secret_nodes  # counts only
    open_nodes = r["open_vote"]["province"]["result"].get("nodes") or []
    voters = {v["name"] for n in open_nodes for v in n.get("voters", [])}
    assert set(r["names"][units[2]]) <= voters
    # The ward cut off: nothing it acknowledged was lost, and it caught up.
    outage = r["outage"]
    assert outage["ballots_missing"] == 0 and outage["ink_missing"] == 0, outage
    assert outage["resync_s"] < 30, outage
    # The minutes list the ward's people.
    for name in r["names"][units[2]]:
        assert name in r["minutes"], name
