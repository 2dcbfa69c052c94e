"""One cascade node as its own OS process: what tests/media/cascade_node_proc.py and
bench/cascade_node.py share. The command line, an SFU and the node link (server/cascade/) on
an aiohttp + python-socketio server bound to 127.0.0.1, the link to the parent joined for one
meeting, and a clean stop on SIGTERM or SIGINT. Each program adds its own routes to `app`
and its clients or instrumentation around it."""

from __future__ import annotations

import argparse
import asyncio
import signal

import socketio
from aiohttp import web

from media import SFU, MediaConfig
from media.link import LinkLimits
from server.cascade.directory import OpenDirectory
from server.cascade.link import NodeCascade
from server.core.settings import NodeSettings
from testkit.ice import gather_only_on
from testkit.media_config import bandwidth_allocation


def node_arguments(description: str) -> argparse.ArgumentParser:
    """--unit, --port, --parent-url, --secret and --child unit=secret (repeated)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--unit", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent-url")
    parser.add_argument("--secret")
    parser.add_argument("--child", action="append", default=[], metavar="UNIT=SECRET")
    return parser


class NodeProcess:
    """Build it, add routes to `app` and peers to `cascade.router`, then `start()`,
    `await stopped()` and `close()`."""

    def __init__(self, args: argparse.Namespace, meeting: str, limits: LinkLimits) -> None:
        gather_only_on("127.0.0.1")  # the node link's transport and any client in the process
        children = dict(c.split("=", 1) for c in args.child)
        self.node = NodeCascade(
            NodeSettings(args.unit, args.parent_url, args.secret, children),
            SFU(MediaConfig(ice_addresses=("127.0.0.1",), ice_timeout_s=5.0,
                            bandwidth_allocation=bandwidth_allocation())), limits,
            directory=OpenDirectory())
        self.meeting = meeting
        self.cascade = self.node.cascade(meeting)
        self.port: int = args.port
        self.app = web.Application()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen, then join the meeting upstream (a child node)."""
        sio = socketio.AsyncServer(async_mode="aiohttp")
        sio.attach(self.app)
        self.node.attach(sio)
        self._runner = web.AppRunner(self.app, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        parent = self.node.start_parent_link()
        if parent is not None:
            await parent.join(self.meeting)

    async def stopped(self) -> None:
        """Until SIGTERM or SIGINT."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()

    async def close(self) -> None:
        await self.node.close()
        await self.node.sfu.close()
        if self._runner is not None:
            await self._runner.cleanup()
