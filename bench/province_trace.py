"""Trace of the province bench's page turns: where each turn's time goes, hop by hop, and
which TCP segments on the node links were sent again (docs/cascade.md, "Loss on a link's
pushes").

    unshare -n sh -c 'ip link set lo up && .venv/bin/python bench/province_trace.py \\
        [--wards N] [--turns N] [--json PATH]'

The same tree, links and meeting as bench/province.py (testkit/province.py, rehearsal.py: 3
wards by default, 15 as its full run), the document published and processed everywhere, then
`--turns` page turns by the province chair while a capture process reads every TCP segment
with a payload on the namespace's loopback (AF_PACKET, kernel timestamps; root, in its own
namespace only). Segments are named by their ports: a node's server, the relay's socket to a
child, the child's socket, the relay's connections to the parent. Per turn it finds the
journal push leaving the province, reaching the city, leaving the city to each ward, reaching
that ward, and the ward's `present:state` to its tablets; and each segment seen twice (sent
again), with how long after.

Reported (ms, p50/p90/p99/max over turns × wards): the city's hold (push in → out to that
ward), the relay's lateness beyond its emulated delay, the ward's processing (push in → its
last `present:state` sent), the harness's receipt (that → the last tablet recorded it); the
retransmissions by connection kind with their delays; late turns (a ward's tablet over its
path's delays by more than 60 ms) with and without a retransmission on that ward's path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testkit.province import ProvinceTree, start_tree
from testkit.rehearsal import (
    document_phase,
    field_is,
    local_doc_ids,
    path_delay_ms,
    prepare,
    search_everywhere,
)

Segment = tuple[float, int, int, int, int, bytes]  # time, sport, dport, seq, length, head


def capture(out: Path) -> None:
    """Every TCP segment with a payload on lo, once (the copy seen on receipt, before
    iptables may drop it): time, ports, seq, payload length, its first 32 bytes."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    sock.bind(("lo", 0))
    sock.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    print("ready", flush=True)
    with out.open("w") as f:
        while True:
            data, ancillary, _, address = sock.recvmsg(128, 64)
            if address[2] == socket.PACKET_OUTGOING:
                continue
            at = next((struct.unpack("qq", d[:16]) for _, kind, d in ancillary if kind == 35),
                      None)
            ip = data[14:]
            if at is None or len(ip) < 40 or ip[9] != socket.IPPROTO_TCP:
                continue
            ihl = (ip[0] & 15) * 4
            tcp = ip[ihl:]
            sport, dport, seq = struct.unpack("!HHI", tcp[:8])
            thl = (tcp[12] >> 4) * 4
            length = struct.unpack("!H", ip[2:4])[0] - ihl - thl
            if length > 0:
                f.write(json.dumps([at[0] + at[1] / 1e9, sport, dport, seq, length,
                                    tcp[thl:thl + 32].hex()]) + "\n")
                f.flush()


def pct(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))], 1) \
        if ordered else None


def spread(values: list[float]) -> dict[str, float | None]:
    return {"p50": pct(values, 50), "p90": pct(values, 90), "p99": pct(values, 99),
            "max": pct(values, 100), "n": len(values)}


def names(tree: ProvinceTree) -> dict[int, str]:
    """Port -> what sends from it: "server:<unit>", "relay:<child>" (the relay's socket to
    the child), "up:<child>" (the relay's connections to the child's parent)."""
    out = {node.server.port: f"server:{node.unit}" for node in tree.nodes}
    for node in tree.nodes:
        if node.link is not None:
            out[node.link.port] = f"relay:{node.unit}"
            out.update({port: f"up:{node.unit}" for port in node.link.ports_toward_parent()})
    return out


def analyse(tree: ProvinceTree, turns: list[tuple[float, dict[str, float]]],
            segments: list[Segment], port_names: dict[int, str]) -> dict[str, Any]:
    def who(port: int) -> str:
        return port_names.get(port, "client")

    first: dict[tuple[int, int, int, int], float] = {}
    resent: list[tuple[float, float, int, int]] = []  # first sent, delay ms, ports
    for at, sport, dport, seq, length, _ in segments:
        key = (sport, dport, seq, length)
        if key in first:
            resent.append((first[key], (at - first[key]) * 1000, sport, dport))
        else:
            first[key] = at

    def kind(sport: int, dport: int) -> str:
        return f"{who(sport).split(':')[0]}->{who(dport).split(':')[0]}"

    def down_to(unit: str, sport: int, dport: int) -> bool:
        """A segment on its way down to `unit` (the province's, the city's, a relay's)."""
        return (who(sport), who(dport)) in {
            (f"server:{tree.province.unit}", f"up:{tree.city.unit}"),
            (f"server:{tree.city.unit}", f"up:{unit}")} \
            or who(sport) in {f"relay:{tree.city.unit}", f"relay:{unit}"}
    wards = [w.unit for w in tree.wards]
    hold: list[float] = []
    relay: list[float] = []
    ward: list[float] = []
    harness: list[float] = []
    late = Counter[str]()
    starts = [t for t, _ in turns]
    for n, (sent, arrived) in enumerate(turns):
        end = starts[n + 1] if n + 1 < len(starts) else sent + 5
        mine = [s for s in segments if sent <= s[0] < end]
        journal = [s for s in mine if b'"journal"' in s[5]]
        into_city = [s[0] for s in journal if who(s[1]) == f"relay:{tree.city.unit}"]
        for unit in wards:
            out = [s[0] for s in journal if who(s[1]) == f"server:{tree.city.unit}"
                   and who(s[2]) == f"up:{unit}"]
            into = [s[0] for s in journal if who(s[1]) == f"relay:{unit}"]
            shown = [s[0] for s in mine if who(s[1]) == f"server:{unit}"
                     and b"present:state" in s[5]]
            if not (into_city and out and into and shown):
                continue
            node = next(w for w in tree.wards if w.unit == unit)
            assert node.link is not None
            hold.append((min(out) - min(into_city)) * 1000)
            relay.append((min(into) - min(out)) * 1000 - node.link.impairment.rtt_ms / 2)
            ward.append((max(shown) - min(into)) * 1000)
            harness.append(arrived[unit] - (max(shown) - sent) * 1000)
            if arrived[unit] - path_delay_ms(tree, node) > 60:
                on_path = any(sent <= t0 < end and down_to(unit, sp, dp)
                              for t0, _, sp, dp in resent)
                late["a segment on its path sent again" if on_path else "none sent again"] += 1
    kinds = Counter(kind(sp, dp) for _, _, sp, dp in resent)
    sent_by_nodes = [s for s in segments if b'"journal"' in s[5]
                     and who(s[1]).startswith("server") and who(s[2]).startswith("up")]
    return {
        "turns": len(turns), "segments": len(segments),
        # a page turn goes down as two pushes (live, then journaled): one segment each?
        "journal_segments_from_nodes": len(sent_by_nodes),
        "of_which_over_400_bytes": sum(1 for s in sent_by_nodes if s[4] > 400),
        "city_hold_ms": spread(hold), "relay_lateness_ms": spread(relay),
        "ward_processing_ms": spread(ward), "harness_receipt_ms": spread(harness),
        "retransmissions": {k: {"count": count, "delay_ms": spread(
            [d for _, d, sp, dp in resent if kind(sp, dp) == k])} for k, count in kinds.items()},
        "late_ward_turns": dict(late),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="hopso-province-trace-"))
    tree = await start_tree(root, args.wards)
    m = None
    try:
        m = await prepare(tree, *((5, 5, 5) if args.wards <= 3 else (10, 15, 5)))
        await document_phase(tree, m, root)
        await search_everywhere(tree, m, "Trang 7", timeout=args.processing_timeout)
        docs = await local_doc_ids(m)
        assert m.chair is not None
        segments_file = root / "segments.jsonl"
        capturer = subprocess.Popen([sys.executable, __file__, "--capture", str(segments_file)],
                                    stdout=subprocess.PIPE, text=True)
        assert capturer.stdout is not None
        capturer.stdout.readline()
        port_names = names(tree)
        wall = time.time() - time.monotonic()  # capture times are the kernel's wall clock
        turns = []
        for n in range(args.turns):
            page = n % 20 + 2
            sent = time.monotonic()
            await m.chair.call("present:update", {"document_id": docs[tree.province.unit],
                                                  "page": page, "zoom": 1.0, "scroll_x": 0,
                                                  "scroll_y": 0})
            arrived: dict[str, float] = {}
            for node in tree.nodes:
                for tablet in m.tablets[node.unit]:
                    at, _ = await tablet.wait_for("present:state", field_is("page", page),
                                                  timeout=30, since=sent)
                    arrived[node.unit] = max(arrived.get(node.unit, 0.0), (at - sent) * 1000)
            turns.append((sent + wall, arrived))
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # resends of the last turn's segments
        capturer.terminate()
        capturer.wait()
        segments: list[Segment] = []
        for line in segments_file.read_text().splitlines():
            at, sport, dport, seq, length, head = json.loads(line)
            segments.append((at, sport, dport, seq, length, bytes.fromhex(head)))
        return analyse(tree, turns, segments, port_names)
    finally:
        for tablet in m.all_tablets() if m else []:
            await tablet.close()
        await tree.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/province_trace.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--wards", type=int, default=3)
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--processing-timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--capture", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.capture:
        capture(args.capture)
        return 0
    if os.geteuid() != 0 or [n for _, n in socket.if_nameindex()] != ["lo"]:
        print("run as root in a loopback-only namespace: unshare -n sh -c "
              "'ip link set lo up && .venv/bin/python bench/province_trace.py'")
        return 2
    report = asyncio.run(run(args))
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
