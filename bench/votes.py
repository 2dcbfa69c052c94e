"""Benchmark: N delegates vote over socket.io against a real server process.

    .venv/bin/python bench/votes.py [--quick] [--json PATH] [--delegates 500] [--rounds N]
                                    [--baseline TREE]

Seeds a meeting of N checked-in delegates in a fresh data directory (SQLite unless
--database-url), starts `run.py` on loopback with HOPSO_FAST_HASH=1, logs every delegate in
with their own socket.io connection, then per round: the chair opens a vote (open and secret
rounds alternate), every delegate casts one ballot at a random moment within --window
seconds, the chair closes it, and every client timestamps the final result.

Reported per round and over all rounds: ballot acknowledgement latency (`cast_p99_ms`), time
from close to the final result on every client (`result_p99_ms`), ballots lost (acked but
missing from the final count, or miscounted), and the server process's CPU. Targets: cast
p99 <= 300 ms, result p99 <= 100 ms, no vote lost.

--baseline TREE runs a second server from another checkout (say main before a change: `git
worktree add /tmp/hopso-main <commit>`, plus its built media/_fanout_c*.so), seeded by its
own code, with its own 500 clients; the two servers' rounds alternate, so both see the same
machine load. SQLite only.

All clients run in this one process, so its own event-loop lag is part of every latency;
the summary records the machine's load average, since other work skews every figure.
BENCH_PROFILE=/path runs the server under cProfile (a debugging aid).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HOPSO_FAST_HASH", "1")  # before server.core.passwords is imported
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/votes.py` as well as `python -m bench.votes`
    sys.path.insert(0, str(ROOT))

import aiohttp
import psutil
import socketio

from bench.seed import BenchMeeting, seed_bench_meeting
from server.core.settings import Settings

TARGET_CAST_P99_MS = 300.0
TARGET_RESULT_P99_MS = 100.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, database_url: str | None, root: Path = ROOT
                 ) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [sys.executable, "run.py", "--port", str(port), "--data-dir", str(data_dir)]
    if os.environ.get("BENCH_PROFILE"):  # debugging aid: cProfile the server into this file
        args[1:1] = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]]
    if database_url:
        args += ["--database-url", database_url]
    env = {**os.environ, "HOPSO_FAST_HASH": "1"}
    process = subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return process, base
        except OSError:
            time.sleep(0.2)
        if process.poll() is not None:
            break
    process.kill()
    raise RuntimeError("the server did not start")


@dataclass
class Voter:
    username: str
    sio: socketio.AsyncClient
    http: aiohttp.ClientSession
    final_at: dict[int, float]
    final_totals: dict[int, list[int]]


async def connect(base: str, username: str, password: str, meeting_id: int) -> Voter:
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.post(f"{base}/api/login", json={"username": username,
                                                    "password": password}) as r:
        if r.status != 200:
            raise RuntimeError(f"login of {username} failed: {r.status}")
    cookie = "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)
    sio = socketio.AsyncClient(reconnection=False)
    voter = Voter(username, sio, http, {}, {})

    def heard(event: dict[str, Any]) -> None:
        vote = event["vote"]
        if vote["final"] and vote["id"] not in voter.final_at:
            voter.final_at[vote["id"]] = time.perf_counter()
            voter.final_totals[vote["id"]] = vote["result"]["totals"]
    sio.on("vote:updated", heard)
    await sio.connect(base, headers={"Cookie": cookie}, transports=["websocket"],
                      wait_timeout=20)
    ack = await sio.call("meeting:join", {"meeting_id": meeting_id}, timeout=20)
    if not ack["ok"]:
        raise RuntimeError(f"{username} could not join: {ack}")
    return voter


async def connect_all(base: str, seeded: BenchMeeting) -> tuple[Voter, list[Voter]]:
    limit = asyncio.Semaphore(25)

    async def one(name: str) -> Voter:
        async with limit:
            return await connect(base, name, seeded.password, seeded.meeting_id)
    chair = await one(seeded.chair)
    voters = await asyncio.gather(*(one(n) for n in seeded.delegates))
    return chair, list(voters)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def one_round(number: int, chair: Voter, voters: list[Voter], seeded: BenchMeeting,
                    secret: bool, window_s: float, server: psutil.Process) -> dict[str, Any]:
    m = seeded.meeting_id
    opened = await chair.sio.call("vote:open", {
        "meeting_id": m, "agenda_item_id": seeded.item_id, "secret": secret,
        "question": f"Biểu quyết thử nghiệm số {number}"}, timeout=30)
    assert opened["ok"], opened
    vote_id = opened["result"]["id"]
    choices = {v.username: random.randrange(3) for v in voters}
    cast_ms: list[float] = []
    errors: list[str] = []

    async def cast(voter: Voter) -> bool:
        await asyncio.sleep(random.uniform(0, window_s))
        started = time.perf_counter()
        ack = await voter.sio.call("vote:cast", {"meeting_id": m, "vote_id": vote_id,
                                                 "option": choices[voter.username], "seq": 1},
                                   timeout=60)
        cast_ms.append((time.perf_counter() - started) * 1000)
        if not ack["ok"]:
            errors.append(ack["error"]["code"])
        return bool(ack["ok"])

    server.cpu_percent(None)
    cpu_before, wall_before = server.cpu_times(), time.perf_counter()
    mine_before = os.times()
    accepted = await asyncio.gather(*(cast(v) for v in voters))
    casting_s = time.perf_counter() - wall_before
    closed_at = time.perf_counter()
    closed = await chair.sio.call("vote:close", {"meeting_id": m, "vote_id": vote_id},
                                  timeout=30)
    close_ack_ms = (time.perf_counter() - closed_at) * 1000
    assert closed["ok"], closed
    deadline = time.perf_counter() + 15
    everyone = [chair, *voters]
    while time.perf_counter() < deadline and any(vote_id not in v.final_at for v in everyone):
        await asyncio.sleep(0.01)
    cpu_after, wall_after = server.cpu_times(), time.perf_counter()
    mine_after = os.times()
    cpu_s = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    expected = [0, 0, 0]
    for voter, ok in zip(voters, accepted):
        if ok:
            expected[choices[voter.username]] += 1
    totals = closed["result"]["result"]["totals"]
    lost = sum(expected) - sum(totals) + sum(abs(a - b) for a, b in zip(expected, totals)) // 2
    wrong_clients = sum(1 for v in everyone if v.final_totals.get(vote_id) != totals)
    result_ms = [(v.final_at[vote_id] - closed_at) * 1000 for v in everyone
                 if vote_id in v.final_at]
    return {
        "_cast_ms": cast_ms, "_result_ms": result_ms,  # pooled into the summary, then dropped
        "round": number, "secret": secret, "voters": len(voters), "accepted": sum(accepted),
        "rejected": len(errors), "casting_s": round(casting_s, 3),
        "cast_p50_ms": round(pct(cast_ms, 50), 1), "cast_p99_ms": round(pct(cast_ms, 99), 1),
        "close_ack_ms": round(close_ack_ms, 1),
        "result_p50_ms": round(pct(result_ms, 50), 1),
        "result_p99_ms": round(pct(result_ms, 99), 1),
        "result_max_ms": round(max(result_ms, default=float("nan")), 1),
        "clients_without_result": len(everyone) - len(result_ms),
        "clients_with_wrong_result": wrong_clients, "lost_votes": max(lost, 0),
        "totals": totals, "expected": expected,
        "server_cpu_s": round(cpu_s, 2),
        "server_cpu_percent": round(100 * cpu_s / (wall_after - wall_before), 1),
        # The clients' own process: near 100 % means its lag is part of every latency.
        "clients_cpu_percent": round(100 * ((mine_after.user - mine_before.user) + (
            mine_after.system - mine_before.system)) / (wall_after - wall_before), 1),
    }


@dataclass
class Target:
    """One server under test, with its seeded meeting and its connected clients."""

    label: str
    process: subprocess.Popen[bytes]
    seeded: BenchMeeting
    chair: Voter
    voters: list[Voter]
    server: psutil.Process
    seed_s: float
    connect_s: float
    rounds: list[dict[str, Any]]


async def seed(root: Path, url: str, delegates: int) -> BenchMeeting:
    if root == ROOT:
        return await seed_bench_meeting(url, delegates)
    # Another checkout seeds with its own code (its own schema and migrations).
    code = ("import asyncio, dataclasses, json, sys; from bench.seed import seed_bench_meeting; "
            "print(json.dumps(dataclasses.asdict(asyncio.run("
            "seed_bench_meeting(sys.argv[1], int(sys.argv[2]))))))")
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code, url, str(delegates)], cwd=root,
        env={**os.environ, "HOPSO_FAST_HASH": "1"}, capture_output=True, text=True, check=True)
    return BenchMeeting(**json.loads(done.stdout.strip().splitlines()[-1]))


async def start_target(label: str, root: Path, args: argparse.Namespace) -> Target:
    data_dir = Path(tempfile.mkdtemp(prefix="hopso-bench-"))
    settings = Settings(data_dir=data_dir, database_url=args.database_url)
    started = time.perf_counter()
    seeded = await seed(root, settings.sqlalchemy_url, args.delegates)
    seed_s = time.perf_counter() - started
    process, base = start_server(data_dir, args.database_url, root)
    started = time.perf_counter()
    try:
        chair, voters = await connect_all(base, seeded)
    except BaseException:
        stop(process)
        raise
    return Target(label, process, seeded, chair, voters, psutil.Process(process.pid), seed_s,
                  time.perf_counter() - started, [])


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def summarise(t: Target, args: argparse.Namespace) -> dict[str, Any]:
    rounds = t.rounds
    casts = [ms for r in rounds for ms in r.pop("_cast_ms")]
    results = [ms for r in rounds for ms in r.pop("_result_ms")]
    lost = sum(r["lost_votes"] + r["clients_with_wrong_result"] for r in rounds)
    cast_p99, result_p99 = round(pct(casts, 99), 1), round(pct(results, 99), 1)
    return {
        "server": t.label, "delegates": args.delegates, "rounds": len(rounds),
        "database": "postgresql" if args.database_url else "sqlite",
        "window_s": args.window, "seed_s": round(t.seed_s, 1), "connect_s": round(t.connect_s, 1),
        # Over every ballot and every client's result of every round:
        "cast_p50_ms": round(pct(casts, 50), 1), "cast_p99_ms": cast_p99,
        "result_p50_ms": round(pct(results, 50), 1), "result_p99_ms": result_p99,
        "cast_p99_worst_round_ms": max(r["cast_p99_ms"] for r in rounds),
        "result_p99_worst_round_ms": max(r["result_p99_ms"] for r in rounds),
        "lost_votes": lost,
        "server_cpu_s_per_round": round(statistics.mean(r["server_cpu_s"] for r in rounds), 2),
        "server_cpu_percent_max": max(r["server_cpu_percent"] for r in rounds),
        "server_rss_mb": round(t.server.memory_info().rss / 2**20, 1),
        "target_cast_p99_ms": TARGET_CAST_P99_MS, "target_result_p99_ms": TARGET_RESULT_P99_MS,
        "target_met": cast_p99 <= TARGET_CAST_P99_MS and result_p99 <= TARGET_RESULT_P99_MS
        and lost == 0,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    targets: list[Target] = []
    try:
        if args.baseline is not None:
            targets.append(await start_target("baseline", args.baseline.resolve(), args))
        targets.append(await start_target("this", ROOT, args))
        # The clients' own garbage collections (500-1,000 connections' worth of objects, a
        # full one 100-300 ms even after the freeze) would stall every client at once and
        # count as server latency: freeze what connecting made, and collect only between
        # rounds, untimed (real delegates' tablets collect on their own).
        gc.collect()
        gc.freeze()
        gc.disable()
        for n in range(1, args.rounds + 1):
            for t in targets:  # alternating: both servers see the same machine load
                t.rounds.append(await one_round(n, t.chair, t.voters, t.seeded,
                                                secret=n % 2 == 0, window_s=args.window,
                                                server=t.server))
                gc.collect()
                await asyncio.sleep(0.5)
        gc.enable()
        summaries = [summarise(t, args) for t in targets]
        for t in targets:
            for v in [t.chair, *t.voters]:
                await v.sio.disconnect()
                await v.http.close()
    finally:
        for t in targets:
            stop(t.process)
    machine = {"cpus": os.cpu_count(), "load_avg_1min_at_end": round(os.getloadavg()[0], 2)}
    report: dict[str, Any] = {
        "results": {t.label: t.rounds for t in targets},
        # Other work on the machine skews every figure: this says how busy it was.
        "summary": {**summaries[-1], **machine},
    }
    if len(summaries) > 1:
        report["baseline"] = {**summaries[0], **machine}
    return report


def print_table(report: dict[str, Any]) -> None:
    cols = [("server", 8), ("round", 5), ("secret", 6), ("accepted", 8), ("cast_p50_ms", 11),
            ("cast_p99_ms", 11), ("result_p50_ms", 13), ("result_p99_ms", 13),
            ("lost_votes", 10), ("server_cpu_s", 12), ("clients_cpu_percent", 19)]
    print("  ".join(name.rjust(width) for name, width in cols))
    for label, rows in report["results"].items():
        for row in rows:
            print("  ".join(str({"server": label, **row}[name]).rjust(width)
                            for name, width in cols))
    print()
    for s in ([report["baseline"]] if "baseline" in report else []) + [report["summary"]]:
        print(f"{s['server']:>8}: {s['delegates']} delegates on {s['database']}, ballots within "
              f"{s['window_s']} s, {s['rounds']} rounds: cast p99 {s['cast_p99_ms']} ms "
              f"(target <= {s['target_cast_p99_ms']:.0f}), result p99 {s['result_p99_ms']} ms "
              f"(target <= {s['target_result_p99_ms']:.0f}), lost {s['lost_votes']}, server "
              f"CPU {s['server_cpu_s_per_round']} s a round, RSS {s['server_rss_mb']} MB "
              f"-> {'PASS' if s['target_met'] else 'FAIL'}")
    s = report["summary"]
    print(f"load {s['load_avg_1min_at_end']} on {s['cpus']} CPUs at the end")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/votes.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two rounds (open, secret)")
    parser.add_argument("--json", type=Path,
                        help="write {results, summary, baseline?} to this file")
    parser.add_argument("--delegates", type=int, default=500)
    parser.add_argument("--rounds", type=int, help="default: 2 with --quick, else 6")
    parser.add_argument("--window", type=float, default=2.0, help="seconds ballots spread over")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: SQLite)")
    parser.add_argument("--baseline", type=Path,
                        help="another checkout whose server runs the same rounds, alternating")
    args = parser.parse_args(argv)
    if args.baseline is not None and args.database_url:
        parser.error("--baseline runs on SQLite only")
    args.rounds = args.rounds or (2 if args.quick else 6)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    report = asyncio.run(run(args))
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if report["summary"]["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
