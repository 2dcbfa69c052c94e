"""A socket.io client at the wire level (Engine.IO 4 over a websocket). For hostile tests:
it sends frames no well-behaved client library would (several arguments, reserved or
non-string event names, undecodable JSON) and pipelines events without waiting for acks.
For benchmarks: hundreds of simulated tablets in one process cost little CPU, so the figures
measure the server, not python-socketio's client. Also runnable as a separate flooding
process: `python -m testkit.raw_socket ...`."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class RawSocket:
    ws: aiohttp.ClientWebSocketResponse
    session: aiohttp.ClientSession | None  # closed with the socket; None: the caller's
    namespace: str = "/"
    on_event: Callable[[str], None] | None = None  # each pushed EVENT frame, raw ('42["…')
    acks: dict[int, Any] = field(default_factory=dict)
    next_id: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    ended_by: str = ""  # what ended the connection, for a failing test's message
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, base: str, cookie: str = "", namespace: str = "/",
                   auth: Any = None, *, session: aiohttp.ClientSession | None = None,
                   on_event: Callable[[str], None] | None = None,
                   max_msg_size: int = 4 * 1024 * 1024) -> RawSocket:
        """Engine.IO handshake, then a socket.io CONNECT to `namespace`; raises
        ConnectionRefusedError(code, CONNECT_ERROR payload) if the server refuses. Over
        `session` if given (many sockets, one connection pool), else over one of its own."""
        owned = aiohttp.ClientSession() if session is None else None
        http = session or owned
        assert http is not None
        url = base.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        try:
            ws = await http.ws_connect(url, headers={"Cookie": cookie} if cookie else None,
                                       max_msg_size=max_msg_size)
            opened = await ws.receive_str()
            assert opened.startswith("0"), opened
            prefix = "" if namespace == "/" else f"{namespace},"
            await ws.send_str(f"40{prefix}{json.dumps(auth) if auth is not None else ''}")
            answer = await ws.receive_str()
            while answer == "2":  # a ping before the connect answer
                await ws.send_str("3")
                answer = await ws.receive_str()
            if answer.startswith(f"44{prefix}"):
                await ws.close()
                error = json.loads(answer[len(prefix) + 2:])
                raise ConnectionRefusedError(error["data"]["code"], error)
            assert answer.startswith(f"40{prefix}"), answer
        except BaseException:
            if owned is not None:
                await owned.close()
            raise
        sock = cls(ws, owned, namespace, on_event)
        sock._reader = asyncio.ensure_future(sock._read())
        return sock

    def frame(self, args: list[Any], ack: bool = True) -> tuple[str, int | None]:
        """An EVENT frame whose JSON array is `args` (normally [name, payload])."""
        ack_id = None
        if ack:
            ack_id = self.next_id
            self.next_id += 1
        prefix = "" if self.namespace == "/" else f"{self.namespace},"
        return f"42{prefix}{'' if ack_id is None else ack_id}{json.dumps(args)}", ack_id

    async def send_raw(self, text: str) -> None:
        await self.ws.send_str(text)

    async def call_raw(self, args: list[Any], timeout: float = 5.0) -> Any:
        """Send [event, *payloads] and wait for its ack (raises TimeoutError if none)."""
        text, ack_id = self.frame(args)
        assert ack_id is not None
        await self.ws.send_str(text)
        return await self.wait_ack(ack_id, timeout)

    async def call(self, event: str, payload: Any, timeout: float = 5.0) -> Any:
        return await self.call_raw([event, payload], timeout)

    async def wait_ack(self, ack_id: int, timeout: float = 5.0) -> Any:
        async def arrive() -> Any:
            while ack_id not in self.acks:
                if self.closed.is_set():
                    raise ConnectionResetError("the server closed the connection")
                self._arrived.clear()
                await self._arrived.wait()
            return self.acks.pop(ack_id)
        return await asyncio.wait_for(arrive(), timeout)

    async def _read(self) -> None:
        prefix = "43" + ("" if self.namespace == "/" else f"{self.namespace},")
        try:
            async for message in self.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    self.ended_by = f"{message.type.name} {str(message.data)[:80]}"
                    break
                text: str = message.data
                if text == "2":
                    await self.ws.send_str("3")
                elif text.startswith(prefix):
                    body = text[len(prefix):]
                    digits = len(body) - len(body.lstrip("0123456789"))
                    data = json.loads(body[digits:])
                    self.acks[int(body[:digits])] = data[0] if data else None
                elif text.startswith("42") and self.on_event is not None:
                    self.on_event(text)
                elif text.startswith(("1", "41")):  # Engine.IO CLOSE or socket.io DISCONNECT
                    self.ended_by = f"server sent {text[:80]!r}"
                    break
                self._arrived.set()
            else:
                self.ended_by = self.ended_by or f"closed ({self.ws.close_code})"
        except (aiohttp.ClientError, ConnectionError) as exc:
            self.ended_by = repr(exc)
        finally:
            self.closed.set()
            self._arrived.set()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.ws.close()
        if self.session is not None:
            await self.session.close()


async def flood(base: str, cookie: str, events: list[list[Any]], seconds: float,
                reconnect: bool) -> dict[str, Any]:
    """Send `events` round-robin as fast as the connection takes them, for `seconds`;
    reconnect when dropped if `reconnect`. Returns what happened, for the test to check."""
    codes: dict[str, int] = {}
    sent = drops = refused_connects = 0
    connections: list[dict[str, Any]] = []  # per connection: seconds, events sent, end
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock = await RawSocket.open(base, cookie)
        except ConnectionRefusedError as exc:
            refused_connects += 1
            key = f"connect:{exc.args[0]}"
            codes[key] = codes.get(key, 0) + 1
            await asyncio.sleep(0.05)
            continue
        if sent == 0:
            print("connected", flush=True)  # the test starts measuring
        opened, sent_before = time.monotonic(), sent
        try:
            i = 0
            while time.monotonic() < deadline and not sock.closed.is_set():
                text, _ = sock.frame(events[i % len(events)])
                await sock.send_raw(text)
                sent += 1
                i += 1
                if i % 64 == 0:
                    await asyncio.sleep(0)  # let the reader collect acks
        except (aiohttp.ClientError, ConnectionError) as exc:
            sock.ended_by = sock.ended_by or repr(exc)
        dropped = time.monotonic() < deadline  # the server ended it, not the clock
        for ack in sock.acks.values():
            code = "ok" if isinstance(ack, dict) and ack.get("ok") else \
                str(ack["error"]["code"]) if isinstance(ack, dict) and "error" in ack else "?"
            codes[code] = codes.get(code, 0) + 1
        drops += dropped
        connections.append({"s": round(time.monotonic() - opened, 3),
                            "sent": sent - sent_before, "end": sock.ended_by})
        await sock.close()
        if not reconnect:
            break
    return {"sent": sent, "codes": codes, "drops": drops, "refused_connects": refused_connects,
            "connections": connections}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("cookie")
    parser.add_argument("events", help="JSON list of [event, payload] frames")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--reconnect", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(flood(args.base, args.cookie, json.loads(args.events), args.seconds,
                               args.reconnect))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
