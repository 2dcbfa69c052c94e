"""Hostile payloads against every registered socket.io event, on a real server.

The events are read from the server's own registries (the Realtime for the default
namespace, the socket.io server's handlers for `/node`), so an event added later is fuzzed
without touching this file. Every frame must be answered by an ack in the documented shape
({"ok": true, "result"} or {"ok": false, "error": {"code", "message"}}), never `internal`,
with no traceback logged, and the server must stay healthy. Frames are written at the wire
level (testkit/raw_socket.py): several arguments, non-string and reserved names,
undecodable JSON, integers of thousands of digits, nesting 100,000 deep.

Bounded: a fixed number of examples, derandomized (the same frames every run)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from server.cascade.keys import NODE as NODE_KEY
from server.cascade.schemas import NAMESPACE as NODE
from server.cascade.tokens import make_token
from server.core.realtime import REALTIME
from server.core.settings import NodeSettings, SocketLimits
from server.core.socket_guard import RESERVED_EVENTS
from testkit.raw_socket import RawSocket
from tests.conftest import Harness, start_harness
from tests.server.core.test_realtime import demo_meeting_id

CHILD_SECRET = "city-secret-0123456789"
# Budgets out of the way: the fuzzer must reach the handlers (test_socket_guard.py and
# test_socket_flood.py test the budgets).
OPEN = SocketLimits(rate_per_s=1e6, burst=1_000_000, user_rate_per_s=1e6,
                    user_burst=1_000_000, flood_strikes=1_000_000)
FUZZ = settings(max_examples=300, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

# -- payloads ------------------------------------------------------------------------------

MAX_FRAME = 1_000_000  # server/core/socket_guard.py create_sio: max_http_buffer_size
EDGE_INTS = [0, 1, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from(EDGE_INTS),
    st.floats(), st.text(max_size=40), st.sampled_from(["", "\x00", "\ud7ff\u202e", "../"]),
    st.just("x" * 100_000))
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=16)


def hostile_texts() -> st.SearchStrategy[str]:
    """JSON texts a client library would never write."""
    deep = st.sampled_from([50, 900, 5_000, 100_000])
    return st.one_of(
        deep.map(lambda d: "[" * d + "]" * d),
        deep.map(lambda d: '{"a":' * d + "1" + "}" * d),
        st.sampled_from([19, 4_300, 4_301, 10_000]).map(lambda n: "9" * n),
        st.sampled_from(["NaN", "-Infinity", "1e400", "-0", '"\\ud800"', "[", '{"a"', "tru",
                         '"unterminated', "{}" * 3, "[1,]", "\x00"]))


def typed(annotation: Any, ids: list[int], name: str = "") -> st.SearchStrategy[Any]:
    """Values of a schema field's type (so that some payloads pass validation and reach the
    handler), real ids for *_id fields, or now and then junk."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return typed(args[0], ids, name)
    if origin in (Union, UnionType):
        return st.one_of(*(typed(a, ids, name) for a in args))
    if origin is Literal:
        return st.sampled_from(args)
    if origin in (list, tuple, set, frozenset):
        return st.lists(typed(args[0] if args else Any, ids), max_size=4)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), typed(args[1] if args else Any, ids),
                               max_size=4)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return schema_objects(annotation, ids)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return st.sampled_from([m.value for m in annotation])
    simple = {bool: st.booleans(), int: st.integers(-5, 10**6), float: st.floats(-1e3, 1e3),
              str: st.text(max_size=30), type(None): st.none()}.get(annotation, junk)
    if annotation is int and name.endswith("_id"):
        simple = st.one_of(st.sampled_from(ids), simple)
    return simple


def schema_objects(schema: type[BaseModel] | None, ids: list[int]
                   ) -> st.SearchStrategy[dict[str, Any]]:
    if schema is None:
        return st.dictionaries(st.text(max_size=12), junk, max_size=4)
    fields = {f: st.one_of(typed(i.annotation, ids, f), typed(i.annotation, ids, f), junk)
              for f, i in schema.model_fields.items()}
    required = {f: fields.pop(f) for f, i in schema.model_fields.items() if i.is_required()}
    return st.fixed_dictionaries(required, optional=fields)


def payload_texts(schema: type[BaseModel] | None, ids: list[int]) -> st.SearchStrategy[str]:
    """A payload's JSON text: mostly objects shaped by the event's schema, sometimes with an
    extra field; or junk; or JSON no client library would write."""
    shaped = schema_objects(schema, ids)
    extra = st.dictionaries(st.text(max_size=12), junk, min_size=1, max_size=2)
    objects = st.one_of(shaped, shaped, st.builds(lambda a, b: {**b, **a}, shaped, extra))
    return st.one_of(objects.map(json.dumps), objects.map(json.dumps), junk.map(json.dumps),
                     hostile_texts())


@st.composite
def frames(draw: st.DrawFn, events: dict[str, type[BaseModel] | None], ids: list[int]
           ) -> str:
    """The JSON array of an EVENT frame, as text: half the time a registered event with a
    payload shaped by its schema (to reach the handlers), else [name, payload...] or worse."""
    if draw(st.booleans()):
        event = draw(st.sampled_from(sorted(events)))
        text = json.dumps([event, draw(schema_objects(events[event], ids))])
        # a bigger frame closes the connection (test_socket_guard.py), as trimmed below
        return text if len(text) <= MAX_FRAME // 2 else json.dumps([event, {}])
    registered = st.sampled_from(sorted(events)).map(json.dumps)
    name = draw(st.one_of(
        registered, registered, registered,
        st.sampled_from(sorted(RESERVED_EVENTS)).map(json.dumps),
        st.text(max_size=20).map(json.dumps),
        st.sampled_from(["123", "null", "[]", '{"a":1}', "true", '"x' + "y" * 5000 + '"'])))
    event = json.loads(name) if name.startswith('"') else None
    schema = events.get(event) if isinstance(event, str) else None
    one = payload_texts(schema, ids)
    args = draw(st.one_of(one.map(lambda text: [text]), one.map(lambda text: [text]),
                          st.lists(one, min_size=0, max_size=3)))
    if draw(st.integers(0, 19)) == 0:  # not an array at all
        return draw(st.sampled_from(['{"event":"x"}', '"meeting:join"', "null", "true"]))
    while len(args) > 1 and sum(map(len, args)) > MAX_FRAME // 2:
        args.pop()  # a bigger frame closes the connection (test_socket_guard.py)
    return "[" + ",".join([name, *args]) + "]"


# -- checks -------------------------------------------------------------------------------

def check_ack(ack: Any, seen: Counter[str]) -> None:
    assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), ack
    if ack["ok"]:
        assert set(ack) == {"ok", "result"}, ack
        seen["ok"] += 1
        return
    error = ack.get("error")
    assert set(ack) == {"ok", "error"} and isinstance(error, dict), ack
    assert set(error) == {"code", "message"}, ack
    assert isinstance(error["code"], str) and isinstance(error["message"], str), ack
    assert error["code"] != "internal", ack
    seen[error["code"]] += 1


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.exc_info or r.levelno >= logging.ERROR]


async def healthy(h: Harness) -> None:
    client = h.anonymous()
    started = time.monotonic()
    status, body = await client.call("GET", "/healthz")
    assert status == 200 and body["status"] == "ok", body
    assert time.monotonic() - started < 1.0


async def send(sock: RawSocket, array_text: str) -> Any:
    ack_id = sock.next_id
    sock.next_id += 1
    prefix = "" if sock.namespace == "/" else f"{sock.namespace},"
    await sock.send_raw(f"42{prefix}{ack_id}{array_text}")
    return await sock.wait_ack(ack_id, timeout=10)


WRONG_VALUES = ["1", 1.5, None, [], {}, 2**63, -(2**63) - 1, "x" * 10_000]


def sweep(name: str, fields: list[str], ids: list[int]) -> list[str]:
    """Fixed hostile frames for one event, so that every event gets each of them."""
    valid_ish = {f: ids[0] for f in fields}
    arrays = [[name], [name, {}], [name, None], [name, []], [name, "text"],
              [name, valid_ish, 2], [name, valid_ish, valid_ish, "three"],
              [name, {**valid_ish, "unexpected": 1}]]
    arrays += [[name, {**valid_ish, f: v}] for f in fields for v in WRONG_VALUES]
    texts = [json.dumps(a) for a in arrays]
    texts += [f"[{json.dumps(name)},{t}]" for t in (
        "9" * 5_000, "[" * 100_000 + "]" * 100_000, "[" * 900 + "]" * 900,
        '{"a":' * 5_000 + "1" + "}" * 5_000, "NaN", "1e400", r'"\ud800"', "[1,")]
    return texts


async def fuzz(sock: RawSocket, fixed: list[str], strategy: st.SearchStrategy[str],
               max_examples: int) -> Counter[str]:
    """Send the fixed frames, then Hypothesis's: it runs in a worker thread (it drives
    examples synchronously) while this event loop runs the server and the socket."""
    loop = asyncio.get_running_loop()
    seen: Counter[str] = Counter()

    async def exchange(frame: str) -> None:
        assert not sock.closed.is_set(), f"connection dropped ({sock.ended_by})"
        try:
            ack = await send(sock, frame)
        except (TimeoutError, ConnectionError) as exc:
            raise AssertionError(f"no ack for {frame[:200]!r} ({sock.ended_by})") from exc
        check_ack(ack, seen)

    for frame in fixed:
        await exchange(frame)

    @settings(FUZZ, max_examples=max_examples)
    @given(frame=strategy)
    def one(frame: str) -> None:
        asyncio.run_coroutine_threadsafe(exchange(frame), loop).result(timeout=30)

    await loop.run_in_executor(None, one)
    return seen


# -- the default namespace: every Realtime event ------------------------------------------

@pytest.fixture
async def fuzzed(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await start_harness(tmp_path, None, socket_limits=OPEN)
    yield h
    await h.close()
    await h.server.close()


async def test_every_event_answers_hostile_frames_in_the_documented_shape(
        fuzzed: Harness, caplog: pytest.LogCaptureFixture) -> None:
    registry = fuzzed.server.app[REALTIME].handlers
    events: dict[str, type[BaseModel] | None] = {n: r.schema for n, r in registry.items()}
    assert len(events) >= 40  # the registry, not a list kept here
    meeting_id = await demo_meeting_id(fuzzed)
    chair = await fuzzed.login("chutri")  # the role that may do the most
    sock = await RawSocket.open(fuzzed.base, chair.cookie_header())
    ids = [meeting_id, meeting_id + 1]
    fixed = [f for name, schema in sorted(events.items())
             for f in sweep(name, sorted(schema.model_fields) if schema else [], ids)]
    fixed += [json.dumps([name, {}]) for name in sorted(RESERVED_EVENTS)]
    try:
        seen = await fuzz(sock, fixed, frames(events, ids), 300)
    finally:
        await sock.close()
    assert seen["invalid"] > len(events) * 10 and sum(seen.values()) == len(fixed) + 300, seen
    assert not tracebacks(caplog), tracebacks(caplog)
    await healthy(fuzzed)


# -- /node: every event a child node may send ----------------------------------------------

@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await start_harness(tmp_path, None, socket_limits=OPEN,
                            node=NodeSettings("province", children={"city": CHILD_SECRET}))
    yield h
    await h.close()
    await h.server.close()


async def test_every_node_event_answers_hostile_frames_in_the_documented_shape(
        node: Harness, caplog: pytest.LogCaptureFixture) -> None:
    registry = node.server.app[NODE_KEY].events
    events: dict[str, type[BaseModel] | None] = {n: e.schema for n, e in registry.items()}
    assert {"hello", "join", "link", "meetings", "headcounts", "ping"} <= set(events)
    sock = await RawSocket.open(node.base, namespace=NODE, auth={
        "unit": "city", "token": make_token("city", CHILD_SECRET)})
    fixed = [f for name, schema in sorted(events.items())
             for f in sweep(name, sorted(schema.model_fields) if schema else [], [1, 2])]
    try:
        seen = await fuzz(sock, fixed, frames(events, [1, 2]), 150)
    finally:
        await sock.close()
    assert seen["invalid"] > 0, seen
    assert not tracebacks(caplog), tracebacks(caplog)
    await healthy(node)


# -- crashers found by hostile testing, kept ---------------------------------------------

KEPT = {
    # issue 11's tester: TypeError in the handler's task, never answered
    "several arguments": '["present:get",{"meeting_id":1},2]',
    # OverflowError from the database driver: `internal` and a traceback
    "id of 2^63": '["agenda:set_current",{"meeting_id":1,"item_id":9223372036854775808}]',
    "id of -2^63-1": '["document:subscribe",{"document_id":-9223372036854775809}]',
    # ValueError (int digit limit) while decoding: a traceback, no answer
    "5,000-digit integer": '["present:get",{"meeting_id":' + "9" * 5000 + "}]",
    # RecursionError while decoding or re-encoding: a traceback, no answer
    "nesting 100,000 deep": '["present:get",' + "[" * 100_000 + "]" * 100_000 + "]",
    "nesting 900 deep": '["present:get",{"meeting_id":' + "[" * 900 + "]" * 900 + "}]",
    "NaN": '["present:pointer",{"document_id":1,"page":0,"x":NaN,"y":1}]',
    "not JSON": '["present:get",{"meeting_id":1',
    "reserved name": '["disconnect",{}]',
}


@pytest.mark.parametrize("frame", list(KEPT.values()), ids=list(KEPT))
async def test_frames_that_once_failed_are_answered_invalid(
        fuzzed: Harness, caplog: pytest.LogCaptureFixture, frame: str) -> None:
    chair = await fuzzed.login("chutri")
    sock = await RawSocket.open(fuzzed.base, chair.cookie_header())
    try:
        ack = await send(sock, frame)
        assert ack["ok"] is False and ack["error"]["code"] == "invalid", ack
        assert len(ack["error"]["message"]) < 300
        assert (await sock.call("present:get", {"meeting_id": 1}))["ok"] in (True, False)
    finally:
        await sock.close()
    assert not tracebacks(caplog), tracebacks(caplog)
