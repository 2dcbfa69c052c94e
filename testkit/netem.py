"""Weak links for UDP media on loopback, per client: rate, delay, jitter, random and bursty
loss, changed mid-call (issue 15 item 5). Shared by tests (tests/testkit/, testkit/
weak_links.py) and bench/network.py.

Why this mechanism (../shared/notes/network-emulation.md):
* This kernel has no sch_netem and cannot create veth pairs, so there is no "one namespace
  per client behind a shaped veth". Everything happens in ONE loopback-only network
  namespace made for the run (`unshare -n`, as root), and each client's traffic is told
  apart by its UDP port: the client's own socket (an aiortc client's gathered port) or the
  server's port of that client's transport (how a harness finds a browser's flow).
  "down" is what goes to that port, "up" what comes from it.
* What the kernel can do, it does, because it costs no CPU on a shared 2-core box and keeps
  exact time: the rate is an HTB class on `lo` per direction (u32 match on the port) with a
  byte-limited FIFO of `queue_ms` of data (a real link's buffer: overflow is loss, not
  unbounded delay); random loss is an iptables `statistic` DROP in INPUT (after the
  bottleneck, silent to the sender, whose sendto never sees EPERM).
* What it cannot (delay, jitter, Gilbert-Elliott bursty loss) goes through NFQUEUE to a
  userspace stage, testkit/nfqueue.py, in its own process so the test's event loop never
  delays a verdict; only the flows that ask for these pass through it.
* A userspace UDP relay was the alternative: it would need every client's SDP candidates
  rewritten (browsers included) and would change the addresses ICE sees; NFQUEUE and tc are
  invisible to the endpoints.
A rate change mid-call is `tc class change` (atomic; the queue is kept); loss and stage
changes replace the flow's rules. Rules vanish with the namespace.

    unshare -n sh -c 'ip link set lo up && .venv/bin/python -m testkit.netem \
        --port 40000 --rate 300k --delay 40 --jitter 10 --loss 0.02 -- CMD ARGS'

runs CMD with the impairment on port 40000 in both directions (see --help).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from testkit.wan import own_network_namespace

QUEUE_NUM = 7
LOSS_CHAIN, STAGE_CHAIN = "HOPSO_NETEM_LOSS", "HOPSO_NETEM_STAGE"
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Shape:
    """One direction of a client's link. None/0 = that impairment is off."""

    rate_bps: float | None = None
    queue_ms: float = 200.0  # the bottleneck's buffer, in time at its rate
    delay_ms: float = 0.0  # one way
    jitter_ms: float = 0.0  # uniform +-, without reordering
    loss: float = 0.0  # random, independent per packet
    burst_loss: float = 0.0  # Gilbert-Elliott: the average share lost in bursts
    burst_len: float = 3.0  # mean packets per burst

    @property
    def staged(self) -> bool:
        return bool(self.delay_ms or self.jitter_ms or self.burst_loss)

    def label(self) -> str:
        parts = []
        if self.rate_bps:
            parts.append(f"{self.rate_bps / 1e3:g} kbit/s")
        if self.delay_ms or self.jitter_ms:
            parts.append(f"{self.delay_ms:g}±{self.jitter_ms:g} ms")
        if self.loss:
            parts.append(f"{self.loss * 100:g} % loss")
        if self.burst_loss:
            parts.append(f"{self.burst_loss * 100:g} % burst loss ({self.burst_len:g} pkts)")
        return ", ".join(parts) or "clean"


CLEAN = Shape()


def unavailable() -> str | None:
    """Why this machine cannot emulate links, or None: for a test's skip reason."""
    if shutil.which("tc") is None:
        return "tc is missing (Debian package iproute2)"
    if iptables() is None:
        return "iptables is missing (Debian package iptables)"
    if not own_network_namespace():
        return "not in a loopback-only network namespace of its own (run under `unshare -n`)"
    return None


def namespace_unavailable() -> str | None:
    """Why a test cannot start a loopback-only namespace with these tools here, or None."""
    for tool in ("unshare", "ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian packages util-linux, iproute2)"
    if iptables() is None:
        return "iptables is missing (Debian package iptables)"
    if subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode:
        return "no permission to create a network namespace (needs root, as in CI)"
    return None


def in_namespace(argv: list[str]) -> list[str]:
    """`argv` run in a new loopback-only network namespace (lo up, nothing else)."""
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]


def iptables() -> str | None:
    return shutil.which("iptables-legacy") or shutil.which("iptables")


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()[:300]}")


@dataclass
class Netem:
    """The impairments of one namespace's loopback; `shape` a port, `change` it mid-call."""

    flows: dict[str, Shape] = field(default_factory=dict)  # "d:PORT" (to it) / "u:PORT"
    _classes: dict[str, int] = field(default_factory=dict)
    _stage: subprocess.Popen[str] | None = None

    def __post_init__(self) -> None:
        reason = unavailable()
        if reason:
            raise RuntimeError(f"cannot emulate links here: {reason}")
        self.ipt = iptables() or "iptables"
        _run("tc", "qdisc", "replace", "dev", "lo", "root", "handle", "1:", "htb")
        for chain in (LOSS_CHAIN, STAGE_CHAIN):
            subprocess.run([self.ipt, "-N", chain], capture_output=True, check=False)
            _run(self.ipt, "-F", chain)
            _run(self.ipt, "-A", "INPUT", "-i", "lo", "-p", "udp", "-j", chain)

    def shape(self, port: int, down: Shape = CLEAN, up: Shape | None = None, *,
              server_side: bool = False) -> None:
        """Impair the link of the client at UDP `port`: `down` for packets to it, `up` (by
        default the same) for packets from it. With `server_side`, `port` is the server's
        end of that client's transport instead (a browser's: the server knows its port), so
        `down` is what leaves it. Calling again changes it (mid-call).
        Keys: "d:P" matches packets to port P, "u:P" packets from it."""
        to_port, from_port = (f"u:{port}", f"d:{port}") if server_side else (
            f"d:{port}", f"u:{port}")
        for key, shape in ((to_port, down), (from_port, down if up is None else up)):
            self._apply(key, shape)

    def change(self, port: int, **fields: float | None) -> None:
        """Change some fields of both directions, e.g. change(port, rate_bps=500_000)."""
        for key in (f"d:{port}", f"u:{port}"):
            self._apply(key, replace(self.flows.get(key, CLEAN), **fields))  # type: ignore[arg-type]

    def _apply(self, key: str, shape: Shape) -> None:
        old = self.flows.get(key, CLEAN)
        match = ["--dport" if key[0] == "d" else "--sport", key[2:]]
        if shape.rate_bps != old.rate_bps or shape.queue_ms != old.queue_ms:
            self._rate(key, shape)
        if shape.loss != old.loss:
            if old.loss:
                _run(self.ipt, "-D", LOSS_CHAIN, *self._loss_rule(match, old.loss))
            if shape.loss:
                _run(self.ipt, "-A", LOSS_CHAIN, *self._loss_rule(match, shape.loss))
        if shape.staged or old.staged:
            self._stage_rule(key, match, shape, old)
        self.flows[key] = shape

    @staticmethod
    def _loss_rule(match: list[str], loss: float) -> list[str]:
        return ["-p", "udp", *match, "-m", "statistic", "--mode", "random",
                "--probability", f"{loss:.5f}", "-j", "DROP"]

    def _rate(self, key: str, shape: Shape) -> None:
        new = key not in self._classes
        minor = self._classes.setdefault(key, 0x10 + len(self._classes))
        classid = f"1:{minor:x}"
        rate = int(shape.rate_bps or 10_000_000_000)  # "off" = a rate nothing reaches
        _run("tc", "class", "add" if new else "change", "dev", "lo", "parent", "1:",
             "classid", classid, "htb", "rate", f"{rate}bit", "ceil", f"{rate}bit",
             "burst", "4k", "cburst", "4k")
        limit = max(4_500, int(rate / 8 * shape.queue_ms / 1000)) if shape.rate_bps else 10 << 20
        _run("tc", "qdisc", "add" if new else "change", "dev", "lo", "parent", classid,
             "handle", f"{minor:x}:", "bfifo", "limit", str(limit))
        if new:
            field_ = "dport" if key[0] == "d" else "sport"
            _run("tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip",
                 "prio", "1", "u32", "match", "ip", "protocol", "17", "0xff",
                 "match", "ip", field_, key[2:], "0xffff", "flowid", classid)

    def _stage_rule(self, key: str, match: list[str], shape: Shape, old: Shape) -> None:
        stage = self._ensure_stage()
        assert stage.stdin is not None and stage.stdout is not None
        stage.stdin.write(
            f'{{"key": "{key}", "delay_ms": {shape.delay_ms}, "jitter_ms": {shape.jitter_ms},'
            f' "burst_loss": {shape.burst_loss}, "burst_len": {shape.burst_len}}}\n')
        stage.stdin.flush()
        if stage.stdout.readline().strip() != "ok":
            raise RuntimeError("the NFQUEUE stage refused a rule")
        rule = ["-p", "udp", *match, "-j", "NFQUEUE", "--queue-num", str(QUEUE_NUM),
                "--queue-bypass"]
        if shape.staged and not old.staged:
            _run(self.ipt, "-A", STAGE_CHAIN, *rule)
        elif old.staged and not shape.staged:
            _run(self.ipt, "-D", STAGE_CHAIN, *rule)

    def _ensure_stage(self) -> subprocess.Popen[str]:
        if self._stage is None:
            self._stage = subprocess.Popen(
                [sys.executable, "-m", "testkit.nfqueue", str(QUEUE_NUM)], cwd=ROOT,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert self._stage.stdout is not None
            if self._stage.stdout.readline().strip() != "ready":
                raise RuntimeError("the NFQUEUE stage did not start (nfnetlink_queue?)")
        return self._stage

    def counters(self) -> dict[str, dict[str, int]]:
        """Per flow key: packets and bytes the rate class sent, and what its queue dropped."""
        out = subprocess.run(["tc", "-s", "class", "show", "dev", "lo"], capture_output=True,
                             text=True, check=False).stdout
        by_class: dict[str, dict[str, int]] = {}
        current = ""
        for line in out.splitlines():
            words = line.split()
            if words[:2] == ["class", "htb"]:
                current = words[2]
            elif words[:1] == ["Sent"] and current:
                by_class[current] = {"bytes": int(words[1]), "packets": int(words[3]),
                                     "dropped": int(words[6].rstrip(","))}
        return {key: by_class.get(f"1:{minor:x}", {}) for key, minor in self._classes.items()}

    def close(self) -> None:
        """Remove every rule (the namespace would too) and stop the stage."""
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True,
                       check=False)
        for chain in (LOSS_CHAIN, STAGE_CHAIN):
            subprocess.run([self.ipt, "-D", "INPUT", "-i", "lo", "-p", "udp", "-j", chain],
                           capture_output=True, check=False)
            subprocess.run([self.ipt, "-F", chain], capture_output=True, check=False)
        if self._stage is not None:
            if self._stage.stdin:
                self._stage.stdin.close()
            self._stage.wait(5)
            self._stage = None
        self.flows.clear()
        self._classes.clear()


def _rate(text: str) -> float:
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1].lower(), 1.0)
    return float(text[:-1] if scale != 1.0 else text) * scale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testkit.netem", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, action="append", required=True,
                        help="the client's UDP port (repeat for several)")
    parser.add_argument("--rate", type=_rate, help="e.g. 300k, 4m (bit/s)")
    parser.add_argument("--queue-ms", type=float, default=200.0)
    parser.add_argument("--delay", type=float, default=0.0, help="one-way ms")
    parser.add_argument("--jitter", type=float, default=0.0, help="+- ms")
    parser.add_argument("--loss", type=float, default=0.0, help="random, 0..1")
    parser.add_argument("--burst-loss", type=float, default=0.0, help="Gilbert-Elliott, 0..1")
    parser.add_argument("--burst-len", type=float, default=3.0, help="mean packets per burst")
    parser.add_argument("--down-only", action="store_true", help="leave packets from it alone")
    parser.add_argument("command", nargs="+", help="what to run while the links are impaired")
    args = parser.parse_args(argv)
    shape = Shape(args.rate, args.queue_ms, args.delay, args.jitter, args.loss,
                  args.burst_loss, args.burst_len)
    reason = unavailable()
    if reason:
        print(f"cannot emulate links here: {reason}", file=sys.stderr)
        return 2
    netem = Netem()
    try:
        for port in args.port:
            netem.shape(port, shape, CLEAN if args.down_only else shape)
        print(f"ports {args.port}: {shape.label()}", file=sys.stderr)
        return subprocess.run(args.command, check=False).returncode
    finally:
        netem.close()


if __name__ == "__main__":
    sys.exit(main())
