"""ICE for one transport: aioice, restartable under a live DTLS session."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aioice import Candidate, Connection

from . import aiortc_seam as seam
from .errors import MediaError

logger = logging.getLogger(__name__)


@dataclass
class IceParameters:
    ufrag: str
    pwd: str
    candidates: list[Candidate] = field(default_factory=list)
    end_of_candidates: bool = False


class IceLink:
    """ICE agent for one transport, duck-typed as aiortc's RTCIceTransport.

    An ICE restart gathers a new aioice Connection with new credentials and
    connects it while the old one keeps carrying data; the DTLS transport,
    reading through `_recv`, then moves to the new one without noticing.
    """

    def __init__(self, addresses: Sequence[str], announced: str | None,
                 controlling: bool) -> None:
        self._addresses = tuple(addresses)
        self._announced = announced
        self._controlling = controlling
        self._conn: Connection | None = None  # carries data
        self._next: Connection | None = None  # restart in progress
        self._swapped = asyncio.Event()
        self._path: tuple[seam.UdpTransport, tuple[str, int]] | None = None
        self.on_path: Callable[[tuple[seam.UdpTransport, tuple[str, int]] | None], None] | None \
            = None
        # Given every SRTP/SRTCP datagram first (see aiortc_seam.SeamConnection);
        # set before gather().
        self.on_srtp: Callable[[bytes], bool] | None = None
        self._closed = False

    @property
    def path(self) -> tuple[seam.UdpTransport, tuple[str, int]] | None:
        """The nominated socket and remote address: what data is sent on."""
        return self._path

    @path.setter
    def path(self, path: tuple[seam.UdpTransport, tuple[str, int]] | None) -> None:
        self._path = path
        if self.on_path is not None:
            self.on_path(path)  # before an old socket closes

    # -- what RTCDtlsTransport uses ------------------------------------------
    @property
    def role(self) -> str:
        return "controlling" if self._controlling else "controlled"

    async def _recv(self) -> bytes:
        while True:
            conn = self._conn
            if conn is None:
                raise ConnectionError("ICE is not connected")
            try:
                return await conn.recv()
            except ConnectionError:
                if self._closed:
                    raise
                if conn is not self._conn:
                    continue  # restarted meanwhile
                if self._next is None:
                    raise
                # The old path died but a restart is under way: wait for it.
                self._swapped.clear()
                await self._swapped.wait()
                if conn is self._conn:
                    raise

    async def _send(self, data: bytes) -> None:
        if not self.send_now(data):
            raise ConnectionError("ICE is not connected")

    # -- our API ---------------------------------------------------------------
    async def gather(self) -> None:
        self._conn = await self._new_connection()

    def local_parameters(self) -> IceParameters:
        """Credentials and candidates to signal (of the restart, if any)."""
        conn = self._next or self._conn
        if conn is None:
            raise MediaError("ICE candidates were not gathered")
        candidates = []
        for c in conn.local_candidates:
            if self._announced and c.type == "host":
                c = Candidate(foundation=c.foundation, component=c.component,
                              transport=c.transport, priority=c.priority,
                              host=self._announced, port=c.port, type=c.type)
            candidates.append(c)
        return IceParameters(conn.local_username, conn.local_password, candidates, True)

    @property
    def connected(self) -> bool:
        return self.path is not None

    async def connect(self, remote: IceParameters) -> None:
        """Run connectivity checks; raises ConnectionError on failure."""
        conn = self._conn
        assert conn is not None
        await self._check(conn, remote)
        self.path = seam.nominated_socket(conn)

    async def add_remote_candidate(self, candidate: Candidate | None) -> None:
        conn = self._next or self._conn
        if conn is None:
            return
        try:
            await conn.add_remote_candidate(candidate)
        except ValueError:  # after end-of-candidates: nothing to learn
            pass

    async def restart_local(self) -> None:
        """Gather a new agent with fresh credentials (signal them next)."""
        if self._next is not None:
            await self._next.close()
        self._next = await self._new_connection()

    @property
    def restarting(self) -> bool:
        return self._next is not None

    async def complete_restart(self, remote: IceParameters) -> None:
        """Connect the new agent and move the data path onto it."""
        conn = self._next
        if conn is None:
            return
        try:
            await self._check(conn, remote)
        except BaseException:
            if self._next is conn:
                self._next = None
            self._swapped.set()
            await conn.close()
            raise
        old, self._conn, self._next = self._conn, conn, None
        self.path = seam.nominated_socket(conn)
        self._swapped.set()
        if old is not None:
            await old.close()  # wakes a pending _recv, which moves on

    def send_now(self, data: bytes) -> bool:
        """Write one datagram on the nominated pair; False if not connected."""
        sock = self.path
        if sock is None or sock[0].is_closing():  # aioice closed it (consent lost, close)
            return False
        sock[0].sendto(data, sock[1])
        return True

    def buffered_bytes(self) -> int:
        """Bytes queued in user space because the kernel socket buffer is full."""
        sock = self.path
        return sock[0].get_write_buffer_size() if sock else 0

    @property
    def local_port(self) -> int | None:
        sock = self.path
        if sock is None:
            return None
        return sock[0].get_extra_info("sockname")[1]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.path = None
        self._swapped.set()
        for conn in (self._next, self._conn):
            if conn is not None:
                await conn.close()

    # -- internals ---------------------------------------------------------------
    async def _new_connection(self) -> Connection:
        # No STUN/TURN for the server: announced_address covers NAT.
        conn = seam.SeamConnection(ice_controlling=self._controlling, use_ipv6=False)
        conn.on_srtp = self.on_srtp
        await seam.gather_host_candidates(conn, self._addresses)
        if not conn.local_candidates:
            await conn.close()
            raise MediaError(f"could not bind any ICE address of {self._addresses}")
        return conn

    async def _check(self, conn: Connection, remote: IceParameters) -> None:
        conn.remote_username = remote.ufrag
        conn.remote_password = remote.pwd
        for candidate in remote.candidates:
            try:
                await conn.add_remote_candidate(candidate)
            except ValueError:  # end-of-candidates was trickled already
                break
        if remote.end_of_candidates:
            try:
                await conn.add_remote_candidate(None)
            except ValueError:
                pass
        await conn.connect()
