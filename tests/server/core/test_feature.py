from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from rooms.db import Database
from server.core import keys
from server.core.feature import Feature, FeatureError, install, key_name
from server.core.metrics import Metrics
from server.core.realtime import Realtime
from server.core.settings import SocketLimits
from server.core.socket_guard import create_sio

ROOM = web.AppKey("room", str)
CLOCK = web.AppKey("clock", int)


def core_app() -> tuple[web.Application, Realtime]:
    app = web.Application()
    app[keys.REGISTRY] = registry = CollectorRegistry()
    app[keys.METRICS] = Metrics.create(registry)
    app[keys.DB] = Database("sqlite+aiosqlite://")  # read by the session cache's lifespan
    return app, Realtime(app, create_sio(None, SocketLimits()))


def test_a_need_no_earlier_feature_provides_is_a_start_up_error_naming_it() -> None:
    app, realtime = core_app()
    ran: list[str] = []
    user = Feature("conference", lambda app, rt: ran.append("conference"), needs=(ROOM,))
    with pytest.raises(FeatureError) as error:
        install(app, realtime, [user])
    assert str(error.value) == ("conference needs tests.server.core.test_feature.room, "
                                "which no earlier feature provides")
    assert ran == []  # checked before any setup ran


def test_a_need_provided_only_by_a_later_feature_names_that_feature() -> None:
    app, realtime = core_app()
    user = Feature("conference", lambda app, rt: None, needs=(ROOM,))
    provider = Feature("rooms", lambda app, rt: app.__setitem__(ROOM, "hall"), provides=(ROOM,))
    with pytest.raises(FeatureError, match=r"conference needs .*room, which no earlier feature "
                                           r"provides \(rooms does, listed after it\)"):
        install(app, realtime, [user, provider])


def test_a_feature_sees_what_core_and_earlier_features_provide() -> None:
    app, realtime = core_app()
    seen: list[object] = []
    provider = Feature("rooms", lambda app, rt: app.__setitem__(ROOM, "hall"), provides=(ROOM,))
    user = Feature("conference", lambda app, rt: seen.extend([app[ROOM], app[keys.METRICS]]),
                   needs=(ROOM, keys.METRICS))
    install(app, realtime, [provider, user])
    assert seen == ["hall", app[keys.METRICS]]


def test_a_feature_that_does_not_set_what_it_provides_is_an_error() -> None:
    app, realtime = core_app()
    forgetful = Feature("rooms", lambda app, rt: None, provides=(ROOM,))
    with pytest.raises(FeatureError, match=r"rooms says it provides .*room, but its setup did "
                                           r"not set it"):
        install(app, realtime, [forgetful])


def test_a_key_provided_twice_is_an_error() -> None:
    app, realtime = core_app()
    one = Feature("one", lambda app, rt: app.__setitem__(ROOM, "a"), provides=(ROOM,))
    two = Feature("two", lambda app, rt: app.__setitem__(ROOM, "b"), provides=(ROOM,))
    with pytest.raises(FeatureError, match=r"two provides .*room, already provided by one"):
        install(app, realtime, [one, two])
    metrics_again = Feature("three", lambda app, rt: None, provides=(keys.METRICS,))
    with pytest.raises(FeatureError, match=r"three provides core\.metrics, already provided by "
                                           r"core"):
        install(app, realtime, [metrics_again])


def test_a_key_is_named_by_its_feature_package() -> None:
    assert key_name(keys.SETTINGS) == "core.settings"


async def test_lifespans_open_in_list_order_and_close_in_reverse() -> None:
    app, realtime = core_app()
    steps: list[str] = []

    def lifespan(name: str):  # type: ignore[no-untyped-def]
        async def run(_app: web.Application) -> AsyncIterator[None]:
            steps.append(f"open {name}")
            yield
            steps.append(f"close {name}")
        return run

    install(app, realtime, [Feature("rooms", lambda app, rt: None, lifespan=lifespan("rooms")),
                            Feature("clock", lambda app, rt: app.__setitem__(CLOCK, 1),
                                    provides=(CLOCK,), lifespan=lifespan("clock"))])
    runner = web.AppRunner(app)
    await runner.setup()
    assert steps == ["open rooms", "open clock"]
    await runner.cleanup()
    assert steps == ["open rooms", "open clock", "close clock", "close rooms"]
