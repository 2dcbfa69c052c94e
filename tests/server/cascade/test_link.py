"""The /node namespace's dispatcher (server/cascade/link.py) under hostile input: node
tokens of any shape are checked without raising, and a Hypothesis fuzzer sends a linked
child's events with payloads of every shape. Whatever arrives: an acknowledgement in the
documented shape, never `internal`, nothing logged at ERROR, and a refused event changes
nothing (headcounts, joined meetings, link ends).

Bounded (HOPSO_FUZZ_EXAMPLES, 300 by default, about 10 s) and derandomized, so CI sends the
same payloads every time; HOPSO_FUZZ_RANDOM=1 draws fresh ones."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import socketio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from rooms.procedure_models import RemoteHeadcount
from server.cascade.keys import NODE
from server.cascade.schemas import (
    NAMESPACE,
    Empty,
    HeadcountEntry,
    Headcounts,
    Join,
    LinkRequest,
    MeetingKey,
    NodeSchema,
)
from server.cascade.tokens import check_token, make_token
from server.core import keys
from tests.conftest import Harness
from tests.server.test_access_matrix import link_city, node_harness, node_meetings
from tests.server.wire_times import assert_wire_times

EXAMPLES = int(os.environ.get("HOPSO_FUZZ_EXAMPLES", "300"))
RANDOM = os.environ.get("HOPSO_FUZZ_RANDOM") == "1"
EVENTS = ["hello", "ping", "meetings", "join", "link", "headcounts"]
REFUSALS = {"invalid", "not_found", "not_joined", "link_refused", "over_seats", "not_invited",
            "too_many"}

# -- tokens ---------------------------------------------------------------------------------

SECRET = "city-secret-0123456789"


@given(st.one_of(st.text(max_size=200), st.integers(), st.none(), st.lists(st.text()),
                 st.binary(max_size=80), st.floats(),
                 st.builds(lambda s, t: f"{int(time.time())}{s}{t}",
                           st.sampled_from([".", ". ", "..", "._"]), st.text(max_size=80))))
@settings(max_examples=400, deadline=None, derandomize=not RANDOM)
def test_check_token_refuses_any_malformed_token_without_raising(token: Any) -> None:
    assert check_token("city", token, SECRET) is not None


def test_check_token_accepts_exactly_the_tokens_it_makes() -> None:
    now = time.time()
    good = make_token("city", SECRET, now)
    assert check_token("city", good, SECRET, now) is None
    stamp, mac = good.split(".")
    arabic = stamp.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    for token in (f"{arabic}.{mac}", f"{stamp}.{mac.upper()}", f" {stamp}.{mac}",
                  f"{stamp}.{mac} ", f"+{stamp}.{mac}", f"{stamp[:4]}_{stamp[4:]}.{mac}",
                  f"{stamp}.{mac[:-1]}é", f"{stamp}.{mac}" + "0" * 1000):
        assert check_token("city", token, SECRET, now) == "malformed token", token
    assert check_token("city", good, "another-secret-0123456", now) == "wrong credential"


# -- schemas -------------------------------------------------------------------------------

def test_every_meeting_a_payload_names_is_found_for_the_scope_check() -> None:
    link = LinkRequest.model_validate({"meeting": "province/7", "op": "reset", "data": {}})
    assert link.meeting_keys() == {"province/7"}
    counts = Headcounts.model_validate({"counts": [
        {"key": "province/1", "members": 2, "present": 1},
        {"key": "city/9", "members": 0, "present": 0}]})
    assert counts.meeting_keys() == {"province/1", "city/9"}
    assert Join.model_validate({"meeting": "ward:đồng-phú/3"}).meeting_keys() == {
        "ward:đồng-phú/3"}
    assert Empty.model_validate({}).meeting_keys() == set()


def test_a_schema_naming_a_meeting_without_the_scoped_type_is_refused_at_registration(
        ) -> None:
    class Sneaky(NodeSchema):
        meeting: str

    class Nested(NodeSchema):
        entries: list[Sneaky]

    class Fine(NodeSchema):
        entries: list[HeadcountEntry]
        meeting: MeetingKey

    for schema in (Sneaky, Nested):
        with pytest.raises(TypeError, match="MeetingKey"):
            schema.check_scoped()
    Fine.check_scoped()


# -- the dispatcher under fuzz ----------------------------------------------------------------

@pytest.fixture
async def linked(tmp_path: Path) -> AsyncIterator[tuple[Harness, socketio.AsyncClient,
                                                        dict[str, int]]]:
    h = await node_harness(tmp_path, None)
    chair = await h.login("chutri")
    meetings = await node_meetings(h, chair)
    child = await link_city(h)
    link = next(iter(h.server.app[NODE].children.values()))
    link.bucket.rate = link.bucket.burst = link.bucket.tokens = 1e9  # fuzzing is not flooding
    yield h, child, meetings
    await child.disconnect()
    await h.close()
    await h.server.close()


async def test_ping_answers_with_the_parent_time_in_iso_8601_utc(
        linked: tuple[Harness, socketio.AsyncClient, dict[str, int]]) -> None:
    _, child, _ = linked
    started = datetime.now(UTC)
    ack = await child.call("ping", {"rtt_ms": 3.5}, namespace=NAMESPACE, timeout=5)
    assert ack["ok"], ack
    assert_wire_times(ack["result"], "t", since=started)


HOSTILE_TEXT = ["", "province/1", "province/2", "province/3", "province/999", "city/1",
                "province/1/2", "province/¹", "province/" + "9" * 40, "x" * 10_000, "\x00",
                "é", "province/ 1", "../1", "province/-1", "catalog", "control", "reset"]
HOSTILE_INT = [0, -1, 1, 3, 10_000, 10_001, 2**31, 2**63, 2**64, 10**30]
FIELDS = ["meeting", "op", "data", "counts", "key", "members", "present", "rtt_ms",
          "producers", "peers", "ids", "sdp", "consumers", "action", "producer_id", "x"]
json_leaf = st.one_of(st.none(), st.booleans(), st.sampled_from(HOSTILE_INT),
                      st.integers(), st.floats(allow_nan=False), st.sampled_from(HOSTILE_TEXT),
                      st.text(max_size=30))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4)),
    max_leaves=12)
live_key = st.sampled_from(["province/1", "province/2", "province/3", "province/999"])
keys_ = st.one_of(live_key, live_key, live_key, st.sampled_from(HOSTILE_TEXT), json_leaf)
small = st.one_of(st.integers(0, 4), st.integers(0, 4), st.integers(-2, 12),
                  st.sampled_from(HOSTILE_INT), json_leaf)
producer_id = st.one_of(st.sampled_from(["p1", "", "x" * 200]), json_leaf)
link_ops = st.one_of(
    st.tuples(st.just("catalog"), st.fixed_dictionaries(
        {"producers": st.lists(st.dictionaries(st.sampled_from(
            ["id", "peer_id", "kind", "hops", "paused", "app_data"]), json_leaf), max_size=3)},
        optional={"peers": st.lists(json_value, max_size=2)})),
    st.tuples(st.sampled_from(["pull", "release"]), st.fixed_dictionaries(
        {"ids": st.lists(producer_id, max_size=3)})),
    st.tuples(st.just("offer"), st.fixed_dictionaries({"sdp": st.text(max_size=40),
        "consumers": st.lists(st.fixed_dictionaries({
            "mid": producer_id, "producer_id": producer_id, "producer_peer_id": producer_id,
            "source": producer_id}), max_size=2)})),
    st.tuples(st.just("reset"), st.just({})),
    st.tuples(st.just("control"), st.fixed_dictionaries(
        {"action": st.sampled_from(["lock", "allow", "mute-all", "floor", "x"])},
        optional={"producer_id": producer_id, "holder": json_value})),
    st.tuples(st.sampled_from(["catalog", "offer", "nope", ""]),
              st.dictionaries(st.sampled_from(FIELDS), json_value, max_size=3)))
# Shaped like each real event (right field names, mostly plausible values), so the fuzzer
# gets past the schema and reaches the scope check, the seats and the media link.
shaped = st.one_of(
    st.tuples(st.just("join"), st.fixed_dictionaries({"meeting": keys_})),
    st.tuples(st.just("link"), st.builds(lambda key, op: {"meeting": key, "op": op[0],
                                                          "data": op[1]}, keys_, link_ops)),
    st.tuples(st.just("headcounts"), st.fixed_dictionaries({"counts": st.lists(
        st.fixed_dictionaries({"key": keys_, "members": small, "present": small}),
        max_size=2)})),
    st.tuples(st.just("ping"), st.fixed_dictionaries({"rtt_ms": st.one_of(st.floats(),
                                                                            small)})))
payloads = st.one_of(json_value, st.dictionaries(st.sampled_from(FIELDS), json_value,
                                                 max_size=4))
cases = st.one_of(shaped, shaped, st.tuples(st.sampled_from(EVENTS), payloads))


async def footprint(h: Harness) -> Any:
    """What a refused event must leave as it was."""
    node = h.server.app[NODE]
    async with h.server.app[keys.DB].session() as s:
        rows = (await s.exec(select(RemoteHeadcount))).all()
    return (sorted((r.meeting_id, r.node, r.members, r.present) for r in rows),
            sorted(m for link in node.children.values() for m in link.meetings),
            sorted((k, sorted(c.links)) for k, c in node.cascades.items()))


@given(case=cases)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
async def test_any_payload_gets_a_documented_answer_and_a_refusal_changes_nothing(
        linked: tuple[Harness, socketio.AsyncClient, dict[str, int]],
        case: tuple[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    h, child, _ = linked
    event, payload = case
    caplog.set_level(logging.WARNING)
    before = await footprint(h)
    ack = await child.call(event, payload, namespace=NAMESPACE, timeout=5)
    assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), ack
    if ack["ok"]:
        assert set(ack) == {"ok", "result"}, ack
    else:
        assert set(ack) == {"ok", "error"} and set(ack["error"]) == {"code", "message"}, ack
        assert ack["error"]["code"] in REFUSALS, ack
        assert len(ack["error"]["message"]) <= 300, ack
        assert await footprint(h) == before, (event, payload, ack)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
