"""A WAN link between two nodes, emulated on loopback: a TCP relay that gives each direction
a rate limit and a one-way delay (this kernel has no netem: ../shared/notes/network-emulation.md),
counts the bytes it carries, and can be cut and restored. Random packet loss is real TCP
loss: `iptables-legacy` drops a share of the segments the two nodes' own sockets send, when
the harness runs as root in its own network namespace (`loss_rule`); the relay itself never
drops bytes. So a lost segment is sent again by the node that sent it, with its own TCP
settings (the node link's minimum RTO: server/cascade/link_socket.py), as over a real WAN;
the relay's sockets lose nothing. The kernel does not see the link's delay (the relay adds
it), so a node's TCP measures a loopback RTT: a loss costs its retransmission timer
(2·SRTT + the minimum RTO for a lone segment) with SRTT ~0, where a real link adds 2·RTT.

A child node's HOPSO_PARENT_URL points at the relay, which forwards to the parent, so the
node link (socket.io) and the HTTP fetches of document files both cross it.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field

CHUNK = 16_384
MARK_BASE = 0x48_0000  # | the relay's port: a link's mark (loss_rule)


@dataclass(frozen=True)
class Impairment:
    rate_bps: float = 4_000_000  # each direction
    rtt_ms: float = 40.0
    loss: float = 0.01  # applied by iptables (loss_rule), not by the relay

    def label(self) -> str:
        return (f"{self.rate_bps / 1e6:g} Mbit/s, {self.rtt_ms:g} ms RTT, "
                f"{self.loss * 100:g} % loss")


@dataclass
class _Direction:
    """One direction of the link: its wire is busy until `free_at`; what it carried."""

    rate_bps: float
    delay_s: float
    free_at: float = 0.0
    bytes: int = 0

    def schedule(self, size: int) -> float:
        """When a chunk of `size` bytes sent now arrives at the other end."""
        now = time.monotonic()
        self.free_at = max(now, self.free_at) + size * 8 / self.rate_bps
        self.bytes += size
        return self.free_at + self.delay_s


@dataclass
class WanLink:
    target_port: int
    impairment: Impairment
    host: str = "127.0.0.1"
    port: int = 0
    down: _Direction = field(init=False)  # parent -> child
    up: _Direction = field(init=False)  # child -> parent
    _server: asyncio.Server | None = None
    _cut: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    # SO_MARK of the relay's connections to the parent, so that iptables can tell the
    # parent's segments on them (loss_rule); 0: unmarked
    mark: int = 0

    def __post_init__(self) -> None:
        half = self.impairment.rtt_ms / 2000
        self.down = _Direction(self.impairment.rate_bps, half)
        self.up = _Direction(self.impairment.rate_bps, half)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> WanLink:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def ports_toward_parent(self) -> set[int]:
        """The local ports of the relay's live connections to the parent (a trace of the link
        tells the parent's segments by them: bench/province_trace.py)."""
        return {w.get_extra_info("sockname")[1] for w in self._writers
                if w.get_extra_info("peername")[1] == self.target_port}

    def cut(self) -> None:
        """The link goes down: every connection across it breaks, and no new one is made
        while it is down: the relay stops listening, so a connection attempt is refused by
        the kernel (its SYN answered with a reset, sent again if that reset is lost).

        It used to accept each attempt and abort it at once: the kernel had completed the
        handshake and acknowledged the client's first bytes (a socket.io handshake), so a
        client whose one reset was lost to the link's loss (iptables drops 1-3 % of the
        relay's segments) had nothing left to send and waited for an answer that never
        came: a node's reconnect begun during the outage hung until its handshake timeout
        (30 s, then 5 s: ParentLink's CONNECT_TIMEOUT_S), after the link was back."""
        self._cut = True
        if self._server is not None:
            self._server.close()  # the listening socket closes now; its connections stay
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()

    async def restore(self) -> None:
        """The link is back: listening again on the same port."""
        self._cut = False
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await self._connect_up()
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for src, dst, direction in ((reader, up_writer, self.up), (up_reader, writer, self.down)):
            task = asyncio.ensure_future(self._pump(src, dst, direction, (writer, up_writer)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connect_up(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not self.mark:
            return await asyncio.open_connection(self.host, self.target_port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.target_port))
        except OSError:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    direction: _Direction, pair: tuple[asyncio.StreamWriter, ...]) -> None:
        """Chunks leave after their transmission time at the link's rate plus the delay,
        in order; at most about one bandwidth-delay product (and a chunk) is in flight."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        window = max(64_000, int(direction.rate_bps / 8 * (direction.delay_s * 2 + 0.05)))
        in_flight = asyncio.Semaphore(max(1, window // CHUNK))

        async def deliver() -> None:
            while True:
                at, chunk = await queue.get()
                if not chunk:
                    return
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                dst.write(chunk)
                in_flight.release()
                await dst.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while not self._cut:
                chunk = await src.read(CHUNK)
                await in_flight.acquire()
                if not chunk:
                    await queue.put((0.0, b""))
                    await sender
                    break
                await queue.put((direction.schedule(len(chunk)), chunk))
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            sender.cancel()
            for w in pair:
                self._writers.discard(w)
                w.transport.abort()


def own_network_namespace() -> bool:
    """True in a loopback-only network namespace (`unshare -n`): only there may a harness
    change firewall rules; they vanish with it, and the machine's own are never touched."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def loss_rule(link: WanLink) -> str | None:
    """Drop the link's `loss` share of the TCP segments each node's own socket sends across
    it, with iptables, or say why it cannot: only in a network namespace of the harness's
    own (the rules vanish with it; the machine's own firewall is never touched), as root,
    with iptables installed. The child's: those to the relay's port. The parent's: those on
    the relay's connections to it, which carry the link's mark (SO_MARK, kept on the
    connection by CONNMARK so the replies match). Each side's ACKs share its loss."""
    loss = link.impairment.loss
    if loss <= 0:
        return None
    if not own_network_namespace():
        return "not in a network namespace of its own (run under `unshare -n`)"
    tool = shutil.which("iptables-legacy") or shutil.which("iptables")
    if tool is None:
        return "iptables is not installed (Debian package iptables)"
    mark = MARK_BASE | link.port
    link.mark = mark  # the relay's next connections to the parent carry it
    drop = ["-m", "statistic", "--mode", "random", "--probability", f"{loss:.4f}", "-j", "DROP"]
    for rule in (
            ["-A", "INPUT", "-i", "lo", "-p", "tcp", "--dport", str(link.port), *drop],
            ["-t", "mangle", "-A", "OUTPUT", "-o", "lo", "-m", "mark", "--mark", str(mark),
             "-j", "CONNMARK", "--save-mark"],
            ["-A", "INPUT", "-i", "lo", "-p", "tcp", "-m", "connmark", "--mark", str(mark),
             "-m", "conntrack", "--ctdir", "REPLY", *drop]):
        run = subprocess.run([tool, *rule], capture_output=True, text=True, check=False)
        if run.returncode != 0:
            link.mark = 0
            return f"iptables refused the loss rule: {run.stderr.strip()[:200]}"
    return None
