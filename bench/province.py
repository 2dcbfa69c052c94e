"""Benchmark: one meeting across the province's tree, the paperless half (issue 13).

    .venv/bin/python bench/province.py [--quick] [--json PATH] [--outage S]
                                       [--processing-timeout S]

Real `run.py --demo` processes (testkit/province.py): the province node, the city
(Thành phố Đồng Hới) and its wards (3 with --quick, 15 in full), each with its own data
directory and SQLite database; every child reaches its parent through an emulated WAN link
(testkit/wan.py: a TCP relay with a rate and a one-way delay; loss by iptables, of the
segments the nodes' own sockets send, when the bench runs as root in its own network
namespace, e.g. `unshare -n sh -c 'ip link set lo up && .venv/bin/python bench/province.py'`;
the summary says whether loss was applied). Links:
4 Mbit/s, 40 ms RTT, 1 % loss; the last ward 1 Mbit/s, 150 ms RTT, 3 % loss.

Simulated tablets at every node (socket.io clients of delegates, 100 across the nodes in
full, 25 with --quick, plus HTTP readers of documents), the province chair and secretary:

* doc_first_page_all_tablets_s: the province secretary publishes a 30-page ~5 MB PDF;
  seconds until page 1 is a real render on every tablet at every node (each asks for it
  when its live channel pushes the document ready, as the web client does; with
  --poll-tablets each polls its document list every 50 ms instead, revalidating it with
  its ETag as a browser does: a 304 while it is unchanged);
* doc_link_bytes_ratio: bytes across a ward's WAN link (parent to ward) while the document
  travels, over the file's size, for the ward with 10 readers and the ward with 1, the larger;
* page_turn_p99_ms: the chair presents and turns 20 pages; `present:state` at every tablet,
  minus nothing; `page_turn_over_path_p99_ms` subtracts each tablet's path one-way delays
  (the target is 150 ms plus them);
* floor_request_to_chair_p99_ms: a delegate at each ward and the city asks for the floor;
  until the province chair's `floor:changed` lists the request;
* vote_result_p99_ms: an open vote; every delegate votes on their own node; close -> the
  final `vote:updated` at every tablet of every node;
* outage_lost_acknowledged / resync_s: a ward's link cut for 30 s (`--outage`) while its
  delegates vote and draw shared ink and the chair turns pages; acknowledged ballots and ink
  missing at the province afterwards (0), and seconds from the link's return until the ward's
  tablets show the presenter's page and the province counts the ward's ballots and ink.

Each latency phase also says how contended the machine was: the cores the node processes
used and how long their event loops waited for a CPU per second (/proc/PID/stat, schedstat).

Prints the JSON and a table; `--json PATH` writes `{"results": [...], "summary": {...}}`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/province.py` as well as `python -m bench.province`
    sys.path.insert(0, str(ROOT))

from testkit.province import ProvinceTree, start_tree
from testkit.rehearsal import (
    document_phase,
    floor_phase,
    local_doc_ids,
    outage_phase,
    page_turns,
    pct,
    prepare,
    search_everywhere,
    vote_phase,
)

TARGETS = {"doc_first_page_all_tablets_s": 5.0, "doc_link_bytes_ratio": 1.1,
           "page_turn_over_path_p99_ms": 150.0, "floor_request_to_chair_p99_ms": 300.0,
           "vote_result_p99_ms": 500.0, "outage_lost_acknowledged": 0, "resync_s": 5.0}
def sched(tree: Any) -> dict[str, tuple[float, float]]:
    """Per node process, so far: seconds on a CPU (all its threads, /proc/PID/stat) and
    seconds its event loop's thread waited for one (/proc/PID/schedstat, run-queue wait)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for node in tree.nodes:
        ran = waited = 0.0
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = node.server.proc.pid
            stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ran = (int(stat[11]) + int(stat[12])) / tick  # utime, stime
            waited = int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
        out[node.unit] = (ran, waited)
    return out


def contention(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]],
               seconds: float) -> dict[str, Any]:
    """Over a phase: the cores all nodes used, and how long a node's event loop waited for a
    CPU per second of the phase (near 0: each got a core when it needed one)."""
    ran = sum(after[u][0] - before[u][0] for u in after)
    waited = {u: (after[u][1] - before[u][1]) / seconds for u in after}
    return {"nodes_cores_used": round(ran / seconds, 2),
            "cpu_wait_s_per_s_max": round(max(waited.values()), 3),
            "cpu_wait_s_per_s_median": round(sorted(waited.values())[len(waited) // 2], 3)}


Mark = tuple[dict[str, tuple[float, float]], float, float]


def mark(tree: ProvinceTree) -> Mark:
    """A phase's start: the nodes' scheduler counters, the clock, the harness's CPU."""
    return sched(tree), time.monotonic(), time.process_time()


def load_since(tree: ProvinceTree, start: Mark) -> dict[str, Any]:
    """Over a phase: the nodes' contention, and the harness's own CPU (its tablets, all in
    this one process, receive every event: on these 2 cores what it spends, and how late
    its loop reads a tablet's event, is part of what each phase measures)."""
    nodes, at, harness = start
    seconds = time.monotonic() - at
    return {**contention(nodes, sched(tree), seconds),
            "harness_cores_used": round((time.process_time() - harness) / seconds, 2)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wards = 3 if args.quick else args.wards
    root = Path(tempfile.mkdtemp(prefix="hopso-province-"))
    load_start = os.getloadavg()[0]
    started = time.monotonic()
    tree = await start_tree(root, wards)
    results: list[dict[str, Any]] = [{"phase": "start", "nodes": len(tree.nodes),
                                      "seconds": round(time.monotonic() - started, 1),
                                      "loss": tree.loss_applied or "applied by iptables",
                                      "logs": f"{root}/<unit>/server.log"}]
    m = None
    try:
        m = await prepare(tree, *((5, 5, 5) if args.quick else (10, 15, 5)))

        def first_page_window() -> Callable[[], dict[str, Any]]:
            """From the publication until page 1 is on every tablet: the nodes' contention
            and the harness's own CPU (its tablets poll, its relays carry the links)."""
            start = mark(tree)

            def end() -> dict[str, Any]:
                return {f"first_page_{k}": v for k, v in load_since(tree, start).items()}
            return end
        results.append(await document_phase(tree, m, root, measure=first_page_window,
                                            poll=args.poll_tablets))
        # Every node processes its copy (renders, search text) after it arrived: on this
        # 2-core box, 16 nodes doing it at once starve the phases below of CPU, which one
        # machine per node would not; measured apart, and until search works everywhere.
        processed = time.monotonic()
        found = await search_everywhere(tree, m, "Trang 7", timeout=args.processing_timeout)
        results.append({"phase": "processed everywhere", "seconds": round(
            time.monotonic() - processed, 1), "search_found_everywhere": all(found.values()),
            "search_pages_by_node": found})
        docs = await local_doc_ids(m)
        start = mark(tree)
        turns = await page_turns(tree, m, docs[tree.province.unit], range(1, 21))
        results.append({"phase": "page turns", "samples": len(turns), **load_since(tree, start),
                        "p50_ms": pct([t[0] for t in turns], 50),
                        "p99_ms": pct([t[0] for t in turns], 99),
                        "over_path_p99_ms": pct([t[0] - t[1] for t in turns], 99),
                        "p99_ms_by_node": {n.unit: pct([t[0] for t in turns if t[2] == n.unit],
                                                       99) for n in tree.nodes}})
        start = mark(tree)
        floor = await floor_phase(tree, m)
        results.append({"phase": "floor", "samples": len(floor), **load_since(tree, start),
                        "p50_ms": pct([f[0] for f in floor], 50),
                        "p99_ms": pct([f[0] for f in floor], 99),
                        "ms_by_node": {unit: round(ms, 1) for ms, unit in floor}})
        start = mark(tree)
        votes = await vote_phase(m)
        results.append({"phase": "vote", "tablets": len(votes), **load_since(tree, start),
                        "p50_ms": pct(votes, 50),
                        "p99_ms": pct(votes, 99)})
        outage = await outage_phase(tree, m, docs, args.outage)
        results.append(outage)
    except Exception as exc:  # noqa: BLE001 - the phases measured so far are still reported
        results.append({"phase": "failed", "error": repr(exc)[:300]})
    finally:
        await tree.close()  # every tablet opened (the chair's too), then every login
    by = {r["phase"]: r for r in results}

    def got(phase: str, key: str) -> Any:
        return by.get(phase, {}).get(key)
    doc = by.get("document", {})
    outage = by.get("outage", {})
    summary = {
        "wards": wards, "delegates": sum(len(t) for t in m.tablets.values()) if m else 0,
        "doc_first_page_all_tablets_s": doc.get("first_page_max_s"),
        "doc_link_bytes_ratio": max(doc["link_bytes_ratio_10_readers"],
                                    doc["link_bytes_ratio_1_reader"]) if doc else None,
        "page_turn_p99_ms": got("page turns", "p99_ms"),
        "page_turn_over_path_p99_ms": got("page turns", "over_path_p99_ms"),
        "floor_request_to_chair_p99_ms": got("floor", "p99_ms"),
        "vote_result_p99_ms": got("vote", "p99_ms"),
        "outage_lost_acknowledged": outage["ballots_missing"] + outage["ink_missing"]
        if outage else None,
        "resync_s": outage.get("resync_s"),
        "loss_applied": tree.loss_applied is None,
        "load_avg_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "seconds": round(time.monotonic() - started, 1),
    }
    summary["targets_met"] = {key: summary[key] is not None and bool(summary[key] <= target)
                              for key, target in TARGETS.items()}
    return {"results": results, "summary": summary}


def print_table(report: dict[str, Any]) -> None:
    for row in report["results"]:
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    s = report["summary"]
    print()
    for key, target in TARGETS.items():
        print(f"{key:>32}: {s[key]!s:>8}  (target <= {target}) "
              f"{'met' if s['targets_met'][key] else 'MISSED'}")
    print(f"{s['wards']} wards, {s['delegates']} delegates, loss applied: {s['loss_applied']}, "
          f"load {s['load_avg_1min']}, {s['seconds']} s")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/province.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 wards, 25 delegates")
    parser.add_argument("--wards", type=int, default=15)
    parser.add_argument("--outage", type=float, default=30.0, help="seconds a ward is cut off")
    parser.add_argument("--processing-timeout", type=float, default=600.0,
                        help="seconds to wait for search to work at every node before the "
                             "later phases")
    parser.add_argument("--poll-tablets", action="store_true",
                        help="page 1's readers poll their document list every 50 ms (as "
                             "before 2026-12-07 13:40; with If-None-Match since 14:05) "
                             "instead of fetching page 1 on the document:updated push, as "
                             "the web client does")
    parser.add_argument("--json", type=Path, help="write {results, summary} to this file")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    print(json.dumps(report, indent=2, ensure_ascii=False))
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if all(report["summary"]["targets_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
