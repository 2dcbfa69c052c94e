"""Janus 1.1.2 (Debian's `janus` package) for bench/sfu.py: sandbox, config, signaling.

Janus skips loopback interfaces when it gathers ICE candidates, and with
nothing else allowed it would fall back to every other interface, i.e. the
machine's LAN address. So Janus never runs in the host's network namespace
here. The bench creates its own namespace with only `lo` and a veth pair
(both ends inside it, nothing outside), puts 127.0.0.2/32 on one end, and
tells Janus to gather on that interface only (`ice_enforce_list`). The load
generator runs in the same namespace and talks to Janus over 127.0.0.2.
Every SDP Janus sends is checked before anything is sent: a candidate or
connection address other than 127.0.0.2 aborts the run (sfu_client).

Janus gets its own config folder with only the VideoRoom plugin and the HTTP
transport, logging at warnings, no event handlers. The VideoRoom room is
created through the API: one publisher, Opus + VP8, no simulcast, no
transport-cc, no recording, fir_freq 0 (no periodic PLI), REMB cap 2.5 Mbps
(Hopso's default). `event_loops = 1` puts every handle on one thread (the
fair one-core comparison); the default gives each handle its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Self

JANUS_ADDRESS = "127.0.0.2"
JANUS_PORT = 8088
VETH, VETH_PEER = "hbveth0", "hbveth1"
ROOM = 4242
LIB = Path("/usr/lib/x86_64-linux-gnu/janus")


class JanusUnavailable(RuntimeError):
    pass


def janus_binary() -> str:
    override = os.environ.get("HOPSO_BENCH_JANUS")  # e.g. another build; tests of this path
    path = override or shutil.which("janus") or "/usr/bin/janus"
    if not Path(path).is_file():
        raise JanusUnavailable(f"the janus binary is not installed ({path} missing; "
                               "apt-get install -y janus)")
    return path


def janus_version() -> str:
    out = subprocess.run([janus_binary(), "--version"], capture_output=True, text=True,
                         timeout=10, check=False)
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith("Janus version"):
            return line.split("(")[-1].rstrip(")") if "(" in line else line
    return "unknown"


# --- network namespace --------------------------------------------------------------

def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10,
                            check=False)
    if result.returncode != 0:
        raise JanusUnavailable(f"ip {' '.join(args)}: {result.stderr.strip()}")


class Namespace:
    """A network namespace with lo and a veth pair holding 127.0.0.2/32."""

    def __init__(self) -> None:
        self.name = f"hopsobench{os.getpid()}"

    def __enter__(self) -> Self:
        if os.geteuid() != 0:
            raise JanusUnavailable("creating a network namespace needs root")
        _ip("netns", "add", self.name)
        try:
            _ip("-n", self.name, "link", "set", "lo", "up")
            _ip("-n", self.name, "link", "add", VETH, "type", "veth", "peer", "name", VETH_PEER)
            _ip("-n", self.name, "addr", "add", f"{JANUS_ADDRESS}/32", "dev", VETH)
            _ip("-n", self.name, "link", "set", VETH, "up")
            _ip("-n", self.name, "link", "set", VETH_PEER, "up")
            self.check()
        except BaseException:
            self.delete()
            raise
        return self

    def check(self) -> None:
        """Only lo (127.0.0.1) and our veth (127.0.0.2) may carry IPv4 here."""
        out = subprocess.run(["ip", "-n", self.name, "-4", "-o", "addr"], capture_output=True,
                             text=True, timeout=10, check=False).stdout
        addresses = {line.split()[3] for line in out.splitlines()}
        if not addresses <= {"127.0.0.1/8", f"{JANUS_ADDRESS}/32"}:
            raise JanusUnavailable(f"unexpected addresses in the namespace: {addresses}")

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10,
                       check=False)

    def __exit__(self, *exc: object) -> None:
        self.delete()


# --- process ---------------------------------------------------------------------------

def write_config(folder: Path, event_loops: int | None, port: int, rtp_range: str) -> Path:
    for sub, name in (("plugins", "plugins/libjanus_videoroom.so"),
                      ("transports", "transports/libjanus_http.so")):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        source = LIB / name
        if not source.exists():
            raise JanusUnavailable(f"{source} is missing")
        (folder / name).symlink_to(source)
    for sub in ("events", "loggers"):
        (folder / sub).mkdir(exist_ok=True)
    loops = f"\tevent_loops = {event_loops}\n" if event_loops else ""
    (folder / "janus.jcfg").write_text(
        "general: {\n"
        f'\tconfigs_folder = "{folder}"\n'
        f'\tplugins_folder = "{folder}/plugins"\n'
        f'\ttransports_folder = "{folder}/transports"\n'
        f'\tevents_folder = "{folder}/events"\n'
        f'\tloggers_folder = "{folder}/loggers"\n'
        "\tdebug_level = 3\n"
        "\tsession_timeout = 120\n"
        f'\tinterface = "{JANUS_ADDRESS}"\n'
        f"{loops}"
        "}\n"
        "certificates: {\n}\n"
        f'media: {{\n\trtp_port_range = "{rtp_range}"\n}}\n'
        "nat: {\n"
        "\tnice_debug = false\n"
        f'\tice_enforce_list = "{VETH}"\n'
        "\tignore_mdns = true\n"
        "}\n"
        "plugins: {\n}\n"
        "transports: {\n}\n"
        "loggers: {\n}\n"
        "events: {\n\tbroadcast = false\n}\n")
    (folder / "janus.transport.http.jcfg").write_text(
        "general: {\n"
        '\tjson = "plain"\n'
        '\tbase_path = "/janus"\n'
        "\thttp = true\n"
        f"\tport = {port}\n"
        "\thttps = false\n"
        "}\n"
        "admin: {\n\tadmin_http = false\n\tadmin_https = false\n}\n"
        "cors: {\n}\n")
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    return folder / "janus.jcfg"


class JanusProcess:
    def __init__(self, namespace: Namespace, event_loops: int | None, preexec: Any,
                 port: int = JANUS_PORT, rtp_range: str = "20000-39999") -> None:
        self.namespace = namespace
        self.event_loops = event_loops
        self.port = port
        self.rtp_range = rtp_range
        self.preexec = preexec
        self.folder = Path(tempfile.mkdtemp(prefix="hopso-sfu-bench-janus-"))
        self.log = self.folder / "janus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        config = write_config(self.folder, self.event_loops, self.port, self.rtp_range)
        cmd = self.namespace.exec_prefix() + [
            janus_binary(), "-C", str(config), "-F", str(self.folder), "-L", str(self.log),
            "-N", "-o"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     preexec_fn=self.preexec)
        # `ip netns exec` execs janus: same pid.
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise JanusUnavailable(f"janus exited at start: {self.tail()}")
        return self.proc.pid

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)


# --- signaling (runs in the load process, inside the namespace) -----------------------

class JanusSignaling:
    """Janus API over HTTP with one session, long-polled for events."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http: Any = None
        self.session_url = ""
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poll_task: asyncio.Task[None] | None = None
        self.publisher_id: int | None = None
        self.handles: dict[str, int] = {}
        self.events: dict[str, int] = {}

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        body = dict(body, transaction=secrets.token_hex(8))
        async with self.http.post(url, json=body) as resp:
            reply = await resp.json(content_type=None)
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus: {reply.get('error')}")
        return reply

    async def open(self) -> None:
        import aiohttp

        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        deadline = time.monotonic() + 20
        while True:
            try:
                reply = await self._post(self.url, {"janus": "create"})
                break
            except (aiohttp.ClientError, OSError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        self.session_url = f"{self.url}/{reply['data']['id']}"
        self._poll_task = asyncio.ensure_future(self._poll())
        admin = await self._attach()
        created = await self._message(admin, {
            "request": "create", "room": ROOM, "permanent": False, "publishers": 1,
            "bitrate": 2_500_000, "fir_freq": 0, "audiocodec": "opus", "videocodec": "vp8",
            "notify_joining": False, "transport_wide_cc_ext": False, "audiolevel_ext": True,
            "audiolevel_event": False, "videoorient_ext": False, "playoutdelay_ext": False,
            "record": False})
        if created["plugindata"]["data"].get("videoroom") != "created":
            raise RuntimeError(f"janus: room not created: {created}")

    async def _poll(self) -> None:
        while True:
            try:
                async with self.http.get(f"{self.session_url}?maxev=50") as resp:
                    events = await resp.json(content_type=None)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep polling
                await asyncio.sleep(0.2)
                continue
            for event in events if isinstance(events, list) else [events]:
                kind = event.get("janus", "?")
                self.events[kind] = self.events.get(kind, 0) + 1
                future = self._pending.pop(event.get("transaction", ""), None)
                if future is not None and not future.done() and kind != "ack":
                    future.set_result(event)

    async def _attach(self) -> int:
        reply = await self._post(self.session_url,
                                 {"janus": "attach", "plugin": "janus.plugin.videoroom"})
        return int(reply["data"]["id"])

    async def _message(self, handle: int, body: dict[str, Any],
                       jsep: dict[str, Any] | None = None) -> dict[str, Any]:
        transaction = secrets.token_hex(8)
        message: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            message["jsep"] = jsep
        future = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future
        async with self.http.post(f"{self.session_url}/{handle}", json=message) as resp:
            reply = await resp.json(content_type=None)
        if reply.get("janus") == "success":  # synchronous request
            self._pending.pop(transaction, None)
            return reply
        if reply.get("janus") != "ack":
            self._pending.pop(transaction, None)
            raise RuntimeError(f"janus: {reply}")
        event = await asyncio.wait_for(future, 30)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise RuntimeError(f"janus videoroom: {data['error']}")
        return event

    async def publish(self, sdp: str) -> str:
        handle = await self._attach()
        joined = await self._message(handle, {"request": "join", "ptype": "publisher",
                                              "room": ROOM, "display": "publisher"})
        self.publisher_id = joined["plugindata"]["data"]["id"]
        event = await self._message(handle, {"request": "publish", "audio": True, "video": True},
                                    {"type": "offer", "sdp": sdp})
        return str(event["jsep"]["sdp"])

    async def subscribe(self, peer: str) -> str:
        handle = self.handles[peer] = await self._attach()
        event = await self._message(handle, {"request": "join", "ptype": "subscriber",
                                             "room": ROOM,
                                             "streams": [{"feed": self.publisher_id}]})
        return str(event["jsep"]["sdp"])

    async def answer(self, peer: str, sdp: str) -> str | None:
        await self._message(self.handles[peer], {"request": "start"},
                            {"type": "answer", "sdp": sdp})
        return None

    async def lag(self, record: bool) -> dict[str, Any] | None:
        return None  # Janus has no asyncio loop to probe

    async def stats(self) -> dict[str, Any] | None:
        return {"events": dict(self.events)}

    async def close(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
        with contextlib.suppress(Exception):
            await self._post(self.session_url, {"janus": "destroy"})
        await self.http.close()
