"""Durability under SIGKILL: a real `run.py` is killed at random moments while tablets send
annotation ops and delegates cast open and secret ballots (and, every other cycle, while the
chair closes the votes); after each restart every acknowledged op and ballot is there
exactly once.

Everything is checked through the protocol, as clients would: op ids (`replayed` on a resend,
`annotation:since` histories, snapshots), ballot `seq`s (a resent open ballot is `stale` once it
is stored; a secret one, sent with its client-made receipt, is answered again, `replayed`),
`procedure:state` (`me.voted`, tallies), receipts (`POST …/receipts/check`) and the
final results at close. What was in flight at a kill is unknown to its client, which resends
it after reconnecting (the protocol's ids make that safe); it must then count exactly once.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from pathlib import Path

from tests.server.durability_clients import KILLS, Killed, Server, Tablet, Voter
from tests.server.durability_scenario import (
    Scenario,
    check_annotations,
    check_votes,
    close_votes,
    setup,
)


async def test_acknowledged_ops_and_ballots_survive_sigkill_exactly_once(
        tmp_path: Path, database_url: str | None) -> None:
    seed = int(os.environ.get("HOPSO_DURABILITY_SEED", time.time_ns() % 1_000_000))
    rnd = random.Random(seed)
    print(f"HOPSO_DURABILITY_SEED={seed}")  # shown with a failure: replays the same choices
    args = ["--data-dir", str(tmp_path / "data")]
    if database_url:
        args += ["--database-url", database_url]
    server = Server(args)
    server.start("--demo")
    sc: Scenario | None = None
    try:
        sc = await setup(server, tmp_path)
        in_flight = 0
        closes: Counter[str] = Counter()
        people: list[Tablet | Voter] = [*sc.tablets, *sc.voters]
        for cycle in range(1, KILLS + 1):
            await sc.open_votes(cycle)
            runners = [asyncio.create_task(c.run(random.Random(rnd.random()))) for c in people]
            await asyncio.sleep(rnd.uniform(1.5, 4.0))
            for task in runners:  # a runner only ends early on a failed assertion
                if task.done():
                    task.result()
            server.kill()  # at a random moment of the traffic, whatever is in flight
            for task in runners:
                task.cancel()
            outcomes = await asyncio.gather(*runners, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException) and not isinstance(
                        outcome, (asyncio.CancelledError, Killed)):
                    raise outcome
            for c in people:
                c.killed()
            in_flight += sum(len(t.queue) for t in sc.tablets) + sum(
                b.pending is not None for v in sc.voters for b in v.ballots)
            server.start()
            await sc.reconnect()
            for c in people:
                await c.resolve()  # resend what was in flight, with its op id / seq
            await check_annotations(sc, rnd)
            await check_votes(sc)
            # Every other cycle the server is also killed while the two closes are in flight
            # (unsealing, counting and freezing a result is one transaction each).
            await close_votes(sc, rnd.uniform(0, 0.05) if cycle % 2 == 0 else None, closes)
        ops = sum(len(t.acked) for t in sc.tablets)
        ballots = sum(v.acks for v in sc.voters)
        resolved = sum((t.resolved for t in sc.tablets), Counter()) + sum(
            (v.resolved for v in sc.voters), Counter())
        drops = sum(link.unexpected_drops for link in sc.links)
        limited = sum(t.rate_limited for t in sc.tablets) + sum(v.rate_limited
                                                                for v in sc.voters)
        print(f"{KILLS + KILLS // 2} SIGKILLs, {ops} ops and {ballots} ballots acknowledged, "
              f"{in_flight} in flight at the kills ({dict(resolved)}), votes {dict(closes)}, "
              f"{limited} rate_limited, {drops} unexpected disconnects")
        assert ops > 100 and ballots > 100, (ops, ballots)
        assert drops == 0, f"{drops} connections dropped while the server was up"
        assert not server.tracebacks(), "\n".join(server.logs[-80:])
    finally:
        if sc is not None:
            for link in sc.links:
                await link.close()
            for client in sc.clients:
                await client.session.close()
        server.stop()
