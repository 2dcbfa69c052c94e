"""The rendered nginx configuration in front of a real Hopso process: TLS, the redirect,
Secure cookies, /metrics kept off the public site, and socket.io's WebSocket upgrade passing
its same-origin check (docs/operations.md, "nginx: TLS and WebSocket")."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import aiohttp
import socketio

from deploy.render import render
from testkit.processes import free_port, start_server
from tests.deploy.test_configs import site, tool, wrapped


def wait_listening(port: int, process: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited: {process.stderr.read() if process.stderr else ''}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("nginx did not listen")


async def test_hopso_behind_the_rendered_nginx(tmp_path: Path) -> None:
    nginx = tool("nginx", "the reverse proxy in front of a real server")
    server = start_server("--demo", "--fast-hash", "--data-dir", str(tmp_path / "data"),
                          preimported=True)
    http_port, https_port = free_port(), free_port()
    render(site(tmp_path, web_port=server.port, http_port=http_port, https_port=https_port,
                listen_ipv6=False), tmp_path / "out")
    main_conf = wrapped(tmp_path / "out/etc/nginx/sites-available/hopso", tmp_path)
    proxy = subprocess.Popen([nginx, "-p", str(tmp_path), "-e", str(tmp_path / "nginx-error.log"),
                              "-c", str(main_conf), "-g", "daemon off;"],
                             stderr=subprocess.PIPE, text=True)
    base = f"https://127.0.0.1:{https_port}"
    try:
        wait_listening(https_port, proxy)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                         connector=aiohttp.TCPConnector(ssl=False)) as http:
            async with http.get(f"http://127.0.0.1:{http_port}/login",
                                allow_redirects=False) as r:
                assert r.status == 301 and r.headers["Location"] == f"{base}/login"
            async with http.get(base + "/healthz") as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
                assert r.headers["Strict-Transport-Security"].startswith("max-age=")
            async with http.get(base + "/metrics") as r:
                assert r.status == 404  # HOPSO_METRICS_ADDR's business, not the public site's
            async with http.post(base + "/api/login", json={
                    "username": "daibieu", "password": server.logins()["daibieu"]}) as r:
                assert r.status == 200, await r.text()
                cookies = r.headers.getall("Set-Cookie")
            assert cookies and all("Secure" in c for c in cookies), cookies
            cookie = "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)
        # A browser's WebSocket through nginx: its Origin is the https site, which Hopso (plain
        # HTTP behind the proxy) accepts only through the forwarded Host and scheme.
        origin = {"Origin": base, "Cookie": cookie}
        client = socketio.AsyncClient(reconnection=False, ssl_verify=False)
        await client.connect(base, headers=origin, transports=["websocket"], wait_timeout=10)
        try:
            assert client.transport() == "websocket"
            ack = await client.call("meeting:join", {"meeting_id": 0}, timeout=10)
            assert isinstance(ack, dict) and "ok" in ack  # an answer through the proxy
        finally:
            await client.disconnect()
        # The same Origin straight to Hopso, without the proxy's headers, is refused.
        direct = socketio.AsyncClient(reconnection=False)
        refused = False
        try:
            await direct.connect(server.base, headers=origin, transports=["websocket"],
                                 wait_timeout=5)
        except socketio.exceptions.ConnectionError:
            refused = True
        finally:
            await direct.disconnect()
        assert refused
    finally:
        proxy.terminate()
        try:
            proxy.wait(10)
        except subprocess.TimeoutExpired:
            proxy.kill()
        server.stop()
        await asyncio.sleep(0)
