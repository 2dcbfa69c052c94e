"""Start Hopso: parse settings, prepare the database, print logins, serve."""

from __future__ import annotations

import asyncio
import logging
import resource
import sys

from aiohttp import web

from server.core.settings import ConfigError, Settings, parse_settings


def _raise_open_files_limit() -> None:
    """Every meeting participant holds a few sockets (ICE, its dup for the C fan-out,
    socket.io): lift the soft limit (often 1024) to the hard one, as media servers do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def _prepare(settings: Settings) -> None:
    """Migrate, create the first admin and the demo data before serving, printing logins."""
    from rooms.db import Database
    from server.core.bootstrap import ensure_admin, seed_demo
    from server.core.migrate import upgrade
    from server.core.passwords import password_hasher

    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.sqlalchemy_url)
    hasher = password_hasher(settings.fast_hash)
    try:
        await upgrade(db)
        if settings.demo:  # before ensure_admin: the demo brings its own administrator
            print("Demo logins (new passwords on every --demo start):", flush=True)
            for login in await seed_demo(db, hasher):
                print(f"  {login.role:<14} {login.username:<10} {login.password}  "
                      f"({login.full_name})", flush=True)
        created = await ensure_admin(db, hasher)
        if created:
            print(f"First start: administrator login  {created[0]} / {created[1]}"
                  "  (shown once; change it after logging in)", flush=True)
    finally:
        await db.close()


def main(argv: list[str]) -> int:
    try:
        settings = parse_settings(argv)
    except ConfigError as exc:
        print(f"hopso: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _raise_open_files_limit()
    from server.core.data_lock import DataDirBusy, hold_data_dir
    try:  # held until the process ends; processes of one PostgreSQL deployment share it
        lock = hold_data_dir(settings.data_dir,
                             shared=not settings.sqlalchemy_url.startswith("sqlite"))
    except DataDirBusy as exc:
        print(f"hopso: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    try:
        asyncio.run(_prepare(settings))
    except Exception as exc:  # noqa: BLE001 - e.g. database unreachable: one clear line, not a traceback
        print(f"hopso: cannot start: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1

    from server.app import create_app
    from server.core.tls import ssl_context

    host = "localhost" if settings.host in ("127.0.0.1", "::1") else settings.host

    def announce(*_: object) -> None:
        # run_app calls its `print` once every site is listening (after runner.setup(), i.e.
        # the app's startup, and TCPSite.start()): whoever reads this line can connect at once.
        print(f"Hopso is running: {settings.scheme}://{host}:{settings.port}/", flush=True)

    try:
        web.run_app(create_app(settings), host=settings.host, port=settings.port,
                    ssl_context=ssl_context(settings), print=announce, access_log=None)
    except OSError as exc:  # a port taken (--port, --metrics-addr): one line, not a traceback
        print(f"hopso: cannot start: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
