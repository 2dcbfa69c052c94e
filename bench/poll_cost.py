"""Benchmark: what one node's CPU pays per poll of a tablet (issue 13, docs/benchmarks.md).

A `run.py --demo` process on SQLite with a meeting of a few published documents; tablets
(logged-in HTTP sessions of the demo delegate) ask, back to back, for the meeting's
document list (`GET /api/meetings/{id}/documents`), the same list again with the ETag of
the last answer (`If-None-Match`, as a browser's HTTP cache revalidates it), and page 1's
image (`GET /api/documents/{id}/pages/0`). For each, the server process's own CPU
(utime + stime from /proc, its workers excluded) over `--requests` requests, less what it
spends idle in as long, divided by the requests: µs of CPU per request.

Usage: .venv/bin/python bench/poll_cost.py [--requests 2000] [--tablets 4] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.documents import User, make_pdf
from testkit.processes import LoggedServer

DOCUMENTS = 5
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """The process's user + system CPU so far (its children not counted)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


async def idle_rate(pid: int, seconds: float = 3.0) -> float:
    """CPU seconds per second the server spends with nobody asking (its timers)."""
    before = cpu_s(pid)
    await asyncio.sleep(seconds)
    return (cpu_s(pid) - before) / seconds


async def measure(pid: int, idle: float, tablets: list[User], requests: int,
                  ask: Callable[[User], Awaitable[int]], expect: int) -> dict[str, Any]:
    """`requests` asks spread over the tablets (each asking back to back)."""
    per = requests // len(tablets)
    statuses: dict[int, int] = {}

    async def run(tablet: User) -> None:
        for _ in range(per):
            status = await ask(tablet)
            statuses[status] = statuses.get(status, 0) + 1

    for tablet in tablets:  # warm-up: statement caches, first-use imports
        await ask(tablet)
    started, before = time.monotonic(), cpu_s(pid)
    await asyncio.gather(*(run(t) for t in tablets))
    wall = time.monotonic() - started
    used = cpu_s(pid) - before - idle * wall
    done = per * len(tablets)
    assert statuses == {expect: done}, statuses
    return {"requests": done, "status": expect, "wall_s": round(wall, 3),
            "requests_per_s": round(done / wall, 1),
            "cpu_us_per_request": round(used / done * 1e6, 1)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hopso-pollcost-") as tmp:
        server = LoggedServer(Path(tmp), "--document-workers", "1")
        try:
            await server.ready()
            return await run(server, Path(tmp), args)
        finally:
            server.stop()


async def run(server: LoggedServer, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    secretary = await User(server, "thuky").login()
    tablets = [await User(server, "daibieu").login() for _ in range(args.tablets)]
    try:
        meeting_id = (await secretary.json("GET", "/api/meetings"))["meetings"][0]["id"]
        ids = []
        for n in range(DOCUMENTS):
            form = aiohttp.FormData()
            pdf = make_pdf(3 + n, tmp / f"doc{n}.pdf")
            form.add_field("file", pdf.read_bytes(), filename=pdf.name,
                           content_type="application/pdf")
            async with secretary.http.post(
                    f"{server.base}/api/meetings/{meeting_id}/documents", data=form,
                    headers={"X-CSRF-Token": secretary.csrf}) as r:
                assert r.status == 202, await r.text()
                ids.append((await r.json())["id"])
        deadline = time.monotonic() + 300
        while True:
            listed = await secretary.json("GET", f"/api/meetings/{meeting_id}/documents")
            states = [d["status"] for g in listed["groups"] for d in g["documents"]]
            if all(s in ("ready", "ready_with_warnings") for s in states):
                break
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.5)
        for document_id in ids:
            await secretary.json("POST", f"/api/documents/{document_id}/publish",
                                 {"published": True})
        await asyncio.sleep(2)  # the access log's and processing's last writes
        list_url = f"{server.base}/api/meetings/{meeting_id}/documents"
        page_url = f"{server.base}/api/documents/{ids[0]}/pages/0"
        etags: dict[int, str] = {}

        async def listing(tablet: User) -> int:
            async with tablet.http.get(list_url) as r:
                await r.read()
                if "ETag" in r.headers:
                    etags[id(tablet)] = r.headers["ETag"]
                return r.status

        async def revalidate(tablet: User) -> int:
            headers = {"If-None-Match": etags[id(tablet)]} if id(tablet) in etags else {}
            async with tablet.http.get(list_url, headers=headers) as r:
                await r.read()
                return r.status

        async def page(tablet: User) -> int:
            async with tablet.http.get(page_url) as r:
                await r.read()
                return r.status

        pid = server.proc.pid
        idle = await idle_rate(pid)
        results = [{"name": "list", **await measure(pid, idle, tablets, args.requests,
                                                    listing, 200)}]
        etag_304 = bool(etags)
        results.append({"name": "list_if_none_match", **await measure(
            pid, idle, tablets, args.requests, revalidate, 304 if etag_304 else 200)})
        results.append({"name": "page_image", **await measure(pid, idle, tablets,
                                                              args.requests, page, 200)})
        return {"results": results, "summary": {
            "idle_cpu_s_per_s": round(idle, 4), "documents": DOCUMENTS,
            "tablets": args.tablets, "list_has_etag": etag_304, "load_at_end": os.getloadavg(),
            **{f"{r['name']}_cpu_us": r["cpu_us_per_request"] for r in results}}}
    finally:
        for user in (secretary, *tablets):
            await user.http.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--tablets", type=int, default=4)
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    report = asyncio.run(main(arguments))
    print(json.dumps(report, indent=2))
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2))
