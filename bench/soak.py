"""Soak: tablets and video viewers against one real server process for half an hour.

    .venv/bin/python bench/soak.py [--quick] [--minutes M] [--json PATH]
                                   [--tablets 200] [--viewers 50] [--database-url URL]

Starts `run.py --demo` (SQLite unless --database-url; HOPSO_FAST_HASH=1 so that logging in
250 people takes seconds), creates the delegates through the REST API, uploads and
publishes a 12-page document, then runs for --minutes (30; --quick: 3):

- tablets (raw socket.io clients, 50 per child process, one login each): join the meeting,
  subscribe to the document, fetch its PDF once and take a snapshot (what the tablet page
  does: pdf.js renders every page from that one PDF), follow the presenter
  (`present:state`), and draw ink strokes on the current page, one every ~25 s each
  (exponential; --stroke-every), a third of them shared with the meeting, one in seven an
  erasure of an earlier own stroke;
- a presenter (the secretary) turning a page every 5 s with three scroll moves between;
- video viewers (bench/sfu_client.py's lightweight endpoints, in one child process with
  the publisher): the chair publishes camera + microphone (pre-encoded VP8 ~1 Mbps + Opus,
  bench/sfu_media.py) through socket.io `media:*`, every viewer subscribes to both.

Every ~10 s it samples the server process: RSS, open file descriptors, CPU, time its
threads waited for a CPU (/proc schedstat: how contended the machine was), event-loop lag
(GET /api/debug/loop-lag), and for that window the p95 of annotation-op ack latency and of
page-turn delivery (presenter's send -> tablet's receipt), the viewers' frame rate.

Targets, after a 60 s warm-up (caches, the first pass over the document's pages):
- memory drift < 10 %: mean RSS of the last minute vs the first minute after warm-up;
- file descriptors flat: max of the last minute <= max of the first minute + 2 % (>= 5);
- p95 stable: the median of the last minute's window p95s (acks, page turns) <= 1.5 x the
  first minute's; windows above 3 x the run's median are listed as spikes.
Prints JSON (the summary) and a table (both made by bench/soak_report.py); --json writes
everything. All clients run on this machine: their CPU is reported, and the load average,
since they compete with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT), str(ROOT / "bench")):
    if p not in sys.path:
        sys.path.insert(0, p)

import aiohttp
from soak_report import WINDOW_S, Sample, pct, print_table, r1, summarize, windows

from testkit.processes import LoggedServer

CHILDREN = Path(__file__).with_name("soak_children.py")  # tablets, viewers
PAGES = 12
TABLETS_PER_PROCESS = 50
STROKE_MEAN_S = 25.0  # per tablet
TURN_EVERY_S = 5.0
PASSWORD = "soak-password-1"


class CpuWait:
    """Seconds a process's threads waited for a CPU (runnable, not running) between calls.
    Per thread, so that threads ending in between (executor threads) do not make it go
    backwards."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.last = self._read()

    def _read(self) -> dict[str, int]:
        out = {}
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
                    out[tid] = int(f.read().split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
        return out

    def delta_s(self) -> float:
        now = self._read()
        waited = sum(v - self.last.get(tid, 0) for tid, v in now.items())
        self.last = now
        return waited / 1e9


class User:
    def __init__(self, base: str, username: str, password: str) -> None:
        self.base, self.username, self.password = base, username, password
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""
        self.id = 0

    async def login(self) -> User:
        async with self.http.post(self.base + "/api/login", json={
                "username": self.username, "password": self.password}) as r:
            body = await r.json()
            assert r.status == 200, (self.username, r.status, body)
        self.csrf, self.id = body["csrf_token"], body["user"]["id"]
        return self

    @property
    def cookie(self) -> str:
        return "; ".join(f"{c.key}={c.value}" for c in self.http.cookie_jar)

    async def json(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        async with self.http.request(method, self.base + path, json=body,
                                     headers={"X-CSRF-Token": self.csrf}) as r:
            answer = await r.json()
            assert r.status == expect, (method, path, r.status, answer)
            return answer


async def gather_limited(limit: int, coros: list[Any]) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with sem:
            return await coro
    return await asyncio.gather(*(one(c) for c in coros))


@dataclass
class Setup:
    meeting_id: int
    document_id: int
    version: int
    page_sizes: list[list[float]]
    delegates: list[User]
    chair: User
    secretary: User
    admin: User


async def prepare(server: LoggedServer, tmp: Path, people: int) -> Setup:
    from bench.documents import make_pdf

    logins = server.logins
    admin = await User(server.base, "quantri", logins["quantri"]).login()
    chair = await User(server.base, "chutri", logins["chutri"]).login()
    secretary = await User(server.base, "thuky", logins["thuky"]).login()
    meeting_id = (await chair.json("GET", "/api/meetings"))["meetings"][0]["id"]

    async def delegate(n: int) -> User:
        name = f"soak{n:03d}"
        user = await admin.json("POST", "/api/users", {
            "username": name, "full_name": f"Đại biểu {n:03d}", "password": PASSWORD,
            "role": "delegate"}, expect=201)
        await chair.json("POST", f"/api/meetings/{meeting_id}/members",
                         {"role": "delegate", "user_id": user["id"]}, expect=201)
        return await User(server.base, name, PASSWORD).login()

    delegates = await gather_limited(8, [delegate(n) for n in range(people)])
    await chair.json("POST", f"/api/meetings/{meeting_id}/open")
    pdf = await asyncio.to_thread(make_pdf, PAGES, tmp / "soak.pdf")
    form = aiohttp.FormData()
    form.add_field("file", pdf.read_bytes(), filename="Tờ trình.pdf",
                   content_type="application/pdf")
    async with secretary.http.post(f"{server.base}/api/meetings/{meeting_id}/documents",
                                   data=form, headers={"X-CSRF-Token": secretary.csrf}) as r:
        doc = await r.json()
        assert r.status == 202, doc
    for _ in range(600):
        details = await secretary.json("GET", f"/api/documents/{doc['id']}")
        if details["status"] in ("ready", "ready_with_warnings"):
            break
        await asyncio.sleep(0.2)
    else:
        raise RuntimeError(f"the document did not become ready: {details}")
    await secretary.json("POST", f"/api/documents/{doc['id']}/publish", {"published": True})
    return Setup(meeting_id, doc["id"], details["version"], details["page_sizes"], delegates,
                 chair, secretary, admin)


# --- child processes -------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    reports: list[dict[str, Any]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    stderr: Path | None = None

    async def read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            text = line.decode().strip()
            if text == "READY":
                self.ready.set()
            elif text.startswith("{"):
                self.reports.append(json.loads(text))

    async def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(b"STOP\n")
            await self.proc.stdin.drain()
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 60)
        except TimeoutError:
            self.proc.kill()
        if self.reader is not None:
            await self.reader


async def spawn(name: str, mode: str, args: dict[str, Any], tmp: Path) -> Child:
    stderr = tmp / f"{name}.err"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILDREN), mode, json.dumps(args), cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=stderr.open("w"), limit=1 << 26)
    child = Child(name, proc, stderr=stderr)
    child.reader = asyncio.create_task(child.read())
    return child


async def wait_ready(children: list[Child], timeout: float) -> None:
    async def one(child: Child) -> None:
        waiter = asyncio.ensure_future(child.ready.wait())
        dead = asyncio.ensure_future(child.proc.wait())
        await asyncio.wait({waiter, dead}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        dead.cancel()
        if not child.ready.is_set():
            tail = child.stderr.read_text()[-3000:] if child.stderr else ""
            raise RuntimeError(f"{child.name} did not get ready:\n{tail}")
    await asyncio.gather(*(one(c) for c in children))


# --- the orchestrator ------------------------------------------------------------------------


@dataclass
class Presenter:
    turns: dict[int, float] = field(default_factory=dict)  # seq of a page turn -> sent at
    acks: list[tuple[float, float]] = field(default_factory=list)
    errors: int = 0


async def present(user: User, setup: Setup, presenter: Presenter, stop: asyncio.Event) -> None:
    import socketio

    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(user.base, headers={"Cookie": user.cookie}, transports=["websocket"])
    await sio.call("meeting:join", {"meeting_id": setup.meeting_id}, timeout=30)
    page, moves = 0, 3
    try:
        while not stop.is_set():
            for move in range(moves + 1):  # a page turn, then scrolls down the page
                started = time.time()
                ack = await sio.call("present:update", {
                    "document_id": setup.document_id, "page": page, "zoom": 1.0,
                    "scroll_x": 0.0, "scroll_y": move / moves}, timeout=60)
                if not ack["ok"]:
                    presenter.errors += 1
                else:
                    presenter.acks.append((started, (time.time() - started) * 1000))
                    if move == 0:
                        presenter.turns[ack["result"]["seq"]] = started
                try:
                    await asyncio.wait_for(stop.wait(), TURN_EVERY_S / (moves + 1))
                    return
                except TimeoutError:
                    pass
            page = (page + 1) % PAGES
    finally:
        await sio.disconnect()


async def sample_server(server: LoggedServer, admin: User, clients: list[int], samples: list[Sample],
                        start: float, stop: asyncio.Event) -> None:
    import psutil

    proc = psutil.Process(server.proc.pid)
    loaders = [psutil.Process(pid) for pid in clients]
    proc.cpu_percent(None)
    for p in loaders:
        p.cpu_percent(None)
    await admin.json("GET", "/api/debug/loop-lag?reset=1")
    waits, waited_at = CpuWait(proc.pid), time.time()
    for k in range(1, 1 << 30):  # at the end of each window, on a fixed schedule
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, start + k * WINDOW_S - time.time()))
            return
        except TimeoutError:
            pass
        lag = await admin.json("GET", "/api/debug/loop-lag?reset=1")
        workers = 0.0
        for child in proc.children(recursive=True):
            try:
                workers += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        clients_cpu = 0.0
        for p in loaders:
            try:
                clients_cpu += p.cpu_percent(None)
            except psutil.NoSuchProcess:
                pass
        now, waited = time.time(), waits.delta_s()
        samples.append(Sample(now, proc.memory_info().rss / 2**20, proc.num_fds(),
                              proc.cpu_percent(None), 100 * waited / (now - waited_at),
                              workers / 2**20, clients_cpu, lag.get("p99_ms"),
                              os.getloadavg()[0]))
        waited_at = now


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="hopso-soak-"))
    server = LoggedServer(tmp, *(["--database-url", args.database_url] if args.database_url
                                 else []), env={"HOPSO_FAST_HASH": "1"})
    children: list[Child] = []
    try:
        await server.ready()
        t0 = time.monotonic()
        setup = await prepare(server, tmp, max(args.tablets, args.viewers))
        print(f"[soak] set up {len(setup.delegates)} delegates and the document in "
              f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        cookies = [d.cookie for d in setup.delegates]
        common = {"base": server.base, "meeting_id": setup.meeting_id,
                  "stroke_every": args.stroke_every,
                  "document_id": setup.document_id, "version": setup.version,
                  "page_sizes": setup.page_sizes}
        for i in range(0, args.tablets, TABLETS_PER_PROCESS):
            children.append(await spawn(f"tablets{i // TABLETS_PER_PROCESS}", "tablets", {
                **common, "cookies": cookies[i:min(args.tablets, i + TABLETS_PER_PROCESS)],
                "seed": args.seed + i}, tmp))
        if args.viewers:
            children.append(await spawn("media", "media", {
                **common, "publisher": setup.chair.cookie,
                "viewers": cookies[:args.viewers]}, tmp))
        await wait_ready(children, 240)
        print(f"[soak] {args.tablets} tablets and {args.viewers} viewers connected; running "
              f"{args.minutes:g} min", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        presenter = Presenter()
        samples: list[Sample] = []
        start = time.time()
        tasks = [asyncio.create_task(present(setup.secretary, setup, presenter, stop)),
                 asyncio.create_task(sample_server(server, setup.admin,
                                                   [c.proc.pid for c in children], samples,
                                                   start, stop))]
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline:
            await asyncio.sleep(min(30.0, max(0.0, deadline - time.monotonic())))
            if samples:
                s = samples[-1]
                print(f"[soak] {time.time() - start:5.0f} s: RSS {s.rss_mb:.0f} MB, "
                      f"{s.fds} fds, CPU {s.cpu_pct:.0f} %", file=sys.stderr, flush=True)
            for task in tasks:
                if task.done():
                    task.result()
        end = time.time()
        stop.set()
        await asyncio.gather(*tasks)
        for child in children:
            await child.stop()
        tablet_reports = [r for c in children for r in c.reports if r["kind"] == "tablets"]
        media_reports = sorted((r for c in children for r in c.reports if r["kind"] == "media"),
                               key=lambda r: r["t"])
        rows = windows(start, end, samples, tablet_reports, media_reports, presenter.turns)
        ack_samples = [((sent - start), ms) for r in tablet_reports for sent, ms in r["acks"]]
        turn_samples = [((presenter.turns[seq] - start), (at - presenter.turns[seq]) * 1000)
                        for r in tablet_reports for seq, at in r["turns"]
                        if presenter.turns.get(seq, end) < end - 1]
        summary = summarize(rows, {"ack": ack_samples, "page_turn": turn_samples}, args.minutes)
        errors: dict[str, int] = {}
        for r in tablet_reports:
            for code, count in r["errors"].items():
                errors[code] = errors.get(code, 0) + count
        expected_turns = len([t for t in presenter.turns.values() if t < end - 1]) * args.tablets
        summary.update({
            "database": "postgresql" if args.database_url else "sqlite",
            "tablets": args.tablets, "viewers": args.viewers,
            "stroke_every_s": args.stroke_every,
            "pdf_fetches": sum(len(r["fetches"]) for r in tablet_reports),
            "pdf_fetch_p95_ms": r1(pct([ms for r in tablet_reports for _, ms in r["fetches"]],
                                       95)),
            "ops_acknowledged": len(ack_samples), "op_errors": errors,
            "page_turns": len(presenter.turns), "page_turn_deliveries": len(turn_samples),
            "page_turn_deliveries_expected": expected_turns,
            "tablet_disconnects": sum(r["disconnects"] for r in tablet_reports),
            "presenter_errors": presenter.errors,
            "video_closed": sorted({reason for r in media_reports for reason in r["closed"]}),
            "server_tracebacks": server.log_text().count("Traceback"),
            "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(),
            "command": "bench/soak.py " + " ".join(sys.argv[1:]),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds")})
        for u in (setup.chair, setup.secretary, setup.admin, *setup.delegates):
            await u.http.close()
        return {"summary": summary, "windows": rows}
    finally:
        for child in children:
            if child.proc.returncode is None:
                child.proc.kill()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 minutes instead of 30")
    parser.add_argument("--minutes", type=float, help="soak duration (default 30, --quick 3)")
    parser.add_argument("--tablets", type=int, default=200)
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--database-url", help="PostgreSQL URL (default: SQLite)")
    parser.add_argument("--stroke-every", type=float, default=STROKE_MEAN_S,
                        help="mean seconds between a tablet's strokes (0: none)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write {summary, windows} to this file")
    args = parser.parse_args()
    args.minutes = args.minutes or (3.0 if args.quick else 30.0)
    if args.minutes < 3:  # the warm-up, then a first and a last minute to compare
        parser.error("--minutes must be at least 3")
    report = asyncio.run(run(args))
    print(json.dumps(report["summary"], indent=2, ensure_ascii=False))
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if report["summary"]["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
