"""The scenario of tests/server/test_sigkill_durability.py: its meetings, people and
connections, and the checks after each restart that every acknowledged op and ballot is
there exactly once (and the votes' closes, killed or not)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from rooms.ballot_box import new_receipt
from tests.conftest import Client
from tests.documents import corpus
from tests.server.durability_clients import (
    ANNOTATOR_USERS,
    OPTIONS,
    PAGES,
    PASSWORD,
    TABLETS_PER_ANNOTATOR,
    VOTERS,
    Ballot,
    Link,
    Server,
    Tablet,
    Voter,
)

# --- the set-up ------------------------------------------------------------------------------


async def login(server: Server, username: str, password: str) -> Client:
    client = Client(aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)), server.base)
    status, body = await client.call("POST", "/api/login",
                                     {"username": username, "password": password})
    assert status == 200, body
    client.csrf, client.user = body["csrf_token"], body["user"]
    return client


async def rest(client: Client, method: str, path: str, body: Any = None,
               expect: int = 200) -> Any:
    status, answer = await client.call(method, path, body)
    assert status == expect, (method, path, status, answer)
    return answer


async def upload_ready(secretary: Client, meeting_id: int, tmp: Path) -> dict[str, Any]:
    pdf = corpus.make_text_pdf(tmp, pages=PAGES, name="to-trinh.pdf").read_bytes()
    form = aiohttp.FormData()
    form.add_field("file", pdf, filename="Tờ trình.pdf", content_type="application/pdf")
    async with secretary.session.post(f"{secretary.base}/api/meetings/{meeting_id}/documents",
                                      data=form, headers={"X-CSRF-Token": secretary.csrf}) as r:
        doc = await r.json()
        assert r.status == 202, doc
    for _ in range(300):
        details = await rest(secretary, "GET", f"/api/documents/{doc['id']}")
        if details["status"] in ("ready", "ready_with_warnings"):
            await rest(secretary, "POST", f"/api/documents/{doc['id']}/publish",
                       {"published": True})
            return dict(details)
        assert details["status"] == "processing", details
        await asyncio.sleep(0.1)
    raise AssertionError("the document did not become ready")


@dataclass
class Scenario:
    server: Server
    clients: list[Client]
    links: list[Link]
    tablets: list[Tablet]
    voters: list[Voter]
    chair: Link
    chair_http: Client
    meetings: tuple[int, int]  # the open votes are in the first, the secret ones in the second
    items: tuple[int, int]
    document_id: int
    version: int
    closed: dict[int, dict[str, Any]] = field(default_factory=dict)  # vote id -> final result
    receipts: list[tuple[Client, int, int, str | None, int | None]] = \
        field(default_factory=list)

    async def open_votes(self, cycle: int) -> None:
        votes = []
        for meeting_id, item_id, secret in zip(self.meetings, self.items, (False, True)):
            vote = await self.chair.ok("vote:open", {
                "meeting_id": meeting_id, "agenda_item_id": item_id, "secret": secret,
                "allow_change": True, "question": f"Thông qua tờ trình số {cycle}"})
            votes.append((meeting_id, vote["id"], secret))
        for voter in self.voters:
            voter.ballots = [Ballot(m, v, s, receipt=new_receipt() if s else None)
                             for m, v, s in votes]

    async def reconnect(self) -> None:
        limit = asyncio.Semaphore(10)

        async def one(link: Link) -> None:
            async with limit:
                await link.close()
                await link.open()
        await asyncio.gather(*(one(link) for link in self.links))


async def setup(server: Server, tmp: Path) -> Scenario:
    """Independent requests go together (in series, the 20 delegates' accounts, memberships,
    logins and connections took most of a run's first ~10 s); lists keep their order, so a
    seed replays the same choices."""
    logins = server.process.logins() if server.process else {}
    clients: list[Client] = []

    async def person(name: str, password: str | None = None) -> Client:
        client = await login(server, name, password or logins[name])
        clients.append(client)
        return client

    admin, chair, secretary = await asyncio.gather(
        *(person(n) for n in ("quantri", "chutri", "thuky")))
    (first,) = (await rest(chair, "GET", "/api/meetings"))["meetings"]
    second = await rest(chair, "POST", "/api/meetings", {
        "title": "Kỳ họp bỏ phiếu kín", "unit_id": first["unit_id"],
        "starts_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, expect=201)
    meetings = (first["id"], second["id"])
    names = [f"daibieu-kt{n:02d}" for n in range(VOTERS)]
    at_once = asyncio.Semaphore(10)  # as `Scenario.reconnect`

    async def delegate(name: str) -> None:
        async with at_once:
            user = await rest(admin, "POST", "/api/users", {
                "username": name, "full_name": f"Đại biểu {name[-2:]}", "password": PASSWORD,
                "role": "delegate"}, expect=201)
            for m in meetings:
                await rest(chair, "POST", f"/api/meetings/{m}/members",
                           {"role": "delegate", "user_id": user["id"]}, expect=201)

    async def ready_meeting(m: int) -> int:
        await rest(chair, "POST", f"/api/meetings/{m}/open")
        item = await rest(chair, "POST", f"/api/meetings/{m}/agenda",
                          {"title": "Thông qua tờ trình"}, expect=201)
        return int(item["id"])

    async def opened_with_document() -> tuple[list[int], dict[str, Any]]:
        items = await asyncio.gather(*(ready_meeting(m) for m in meetings))
        return items, await upload_ready(secretary, meetings[0], tmp)

    (items, document), _ = await asyncio.gather(
        opened_with_document(), asyncio.gather(*(delegate(name) for name in names)))
    links: list[Link] = []

    def link_of(client: Client) -> Link:
        links.append(Link(server, client))
        return links[-1]

    chair_link = link_of(chair)

    async def chair_joins() -> None:
        await chair_link.open()
        for m in meetings:
            await chair_link.join("meeting:join", {"meeting_id": m})
            await chair_link.ok("attendance:check_in", {"meeting_id": m, "mode": "in_person"})

    async def tablet(link: Link) -> Tablet:
        async with at_once:
            await link.open()
            await link.join("meeting:join", {"meeting_id": meetings[0]})
            details = await link.join("document:subscribe", {"document_id": document["id"]})
            return Tablet(str(link.client.user["id"]), link, document["id"],
                          details["version"], details["page_sizes"])

    async def voter(name: str) -> Voter:
        async with at_once:
            client = await person(name, PASSWORD)
            link = Link(server, client)
            await link.open()
            for m in meetings:
                await link.join("meeting:join", {"meeting_id": m})
                await link.ok("attendance:check_in", {"meeting_id": m, "mode": "online"})
            return Voter(link, client)

    annotators = {"chutri": chair, "thuky": secretary} | dict(zip(
        ANNOTATOR_USERS[2:], await asyncio.gather(*(person(n) for n in ANNOTATOR_USERS[2:]))))
    tablet_links = [link_of(annotators[name]) for name in ANNOTATOR_USERS
                    for _ in range(TABLETS_PER_ANNOTATOR)]
    _, tablets, voters = await asyncio.gather(
        chair_joins(), asyncio.gather(*(tablet(link) for link in tablet_links)),
        asyncio.gather(*(voter(name) for name in names)))
    links += [v.link for v in voters]
    return Scenario(server, clients, links, tablets, voters, chair_link, chair, meetings,
                    (items[0], items[1]), document["id"], document["version"])


# --- checks after each restart ---------------------------------------------------------------


async def check_annotations(sc: Scenario, rnd: random.Random) -> int:
    """Every acknowledged op once, at its acknowledged seq; snapshots hold exactly the
    annotations the acknowledged ops leave; an acknowledged op resent is `replayed`."""
    acked: dict[str, tuple[int, int]] = {}
    live: dict[str, tuple[str, str]] = {}  # annotation id -> (author, visibility)
    for t in sc.tablets:
        acked.update(t.acked)
        live.update({a: (t.user_id, vis) for a, vis in t.live.items()})
    by_user: dict[str, list[Tablet]] = {}
    for t in sc.tablets:
        by_user.setdefault(t.user_id, []).append(t)

    async def user_view(user_id: str, tablets: list[Tablet]) -> None:
        link = tablets[0].link
        own = {op: at for t in tablets for op, at in t.acked.items()}
        seen: set[str] = set()
        for page in range(PAGES):
            since = await link.ok("annotation:since", {
                "document_id": sc.document_id, "version": sc.version, "page": page,
                "after_seq": 0})
            ops = [e["op_id"] for e in since["events"]]
            assert len(ops) == len(set(ops)), f"an op appears twice on page {page}"
            seqs = [e["seq"] for e in since["events"]]
            assert seqs == sorted(set(seqs)), seqs
            for event in since["events"]:
                # Only acknowledged ops, each at the seq its acknowledgement gave.
                assert acked.get(event["op_id"]) == (page, event["seq"]), event
            seen.update(ops)
        lost = set(own) - seen
        assert not lost, f"user {user_id}: acknowledged ops missing after restart: {lost}"
        snap = await link.ok("annotation:snapshot", {"document_id": sc.document_id,
                                                     "version": sc.version})
        ids = [a["id"] for p in snap["pages"] for a in p["annotations"]]
        assert len(ids) == len(set(ids)), "an annotation appears twice"
        presenter = user_id in {str(c.user["id"]) for c in sc.clients
                                if c.user["username"] in ("chutri", "thuky")}
        expected = {a for a, (author, vis) in live.items()
                    if author == user_id or vis == "meeting" or (vis == "presenter" and presenter)}
        assert set(ids) == expected, (f"user {user_id}: missing {expected - set(ids)}, "
                                      f"unexpected {set(ids) - expected}")

    await asyncio.gather(*(user_view(u, ts) for u, ts in by_user.items()))
    for t in sc.tablets:
        for op_id in rnd.sample(sorted(t.acked), min(2, len(t.acked))):
            result = await t.link.ok("annotation:op", {"document_id": sc.document_id,
                                                       "version": sc.version,
                                                       "op": t.sent[op_id]})
            assert result["replayed"] and (result["page"], result["seq"]) == t.acked[op_id]
    return len(acked)


async def check_votes(sc: Scenario) -> None:
    """Each voter's last acknowledged ballot is stored (resending it is `stale`, or for a
    secret one, answered again with its receipt), `me.voted`
    lists the vote, tallies and turnout count each voter once, receipts check out."""
    expected: dict[int, Counter[int]] = {}
    for voter in sc.voters:
        for b in voter.ballots:
            tally = expected.setdefault(b.vote_id, Counter())
            if b.option is not None:
                tally[b.option] += 1
    limit = asyncio.Semaphore(8)

    async def voter_view(voter: Voter) -> None:
        async with limit:
            for b in voter.ballots:
                if b.option is None or b.vote_id in sc.closed:
                    continue
                payload: dict[str, Any] = {"meeting_id": b.meeting_id, "vote_id": b.vote_id,
                                           "option": b.option, "seq": b.seq}
                if b.receipt is not None:
                    payload["receipt"] = b.receipt
                again = await voter.link.call("vote:cast", payload)
                if b.secret:  # answered again only if its sealed ballot holds that option
                    assert again.get("result") == {
                        "vote_id": b.vote_id, "option": b.option, "changed": False,
                        "receipt": b.receipt, "replayed": True}, \
                        f"an acknowledged ballot is not stored: {b} resent -> {again}"
                    continue
                assert not again["ok"] and again["error"]["code"] == "stale", \
                    f"an acknowledged ballot is not stored: {b} resent -> {again}"
            for m in sc.meetings:
                state = await voter.link.ok("procedure:state", {"meeting_id": m})
                current = {b.vote_id for b in voter.ballots
                           if b.meeting_id == m and b.vote_id not in sc.closed}
                mine = {b.vote_id for b in voter.ballots if b.vote_id in current
                        and b.option is not None}
                assert set(state["me"]["voted"]) & current == mine, (state["me"], mine)

    async def receipt(client: Client, m: int, vote_id: int, code: str | None,
                      option: int | None) -> None:
        async with limit:
            found = await rest(client, "POST", f"/api/meetings/{m}/receipts/check",
                               {"receipt": code})
        assert found["counted"] and found["vote_id"] == vote_id and found["option"] == option, \
            (found, vote_id, option)

    current = [(voter.client, b.meeting_id, b.vote_id, b.receipt, b.option)
               for voter in sc.voters for b in voter.ballots
               if b.secret and b.receipt is not None and b.option is not None
               and b.vote_id not in sc.closed]
    await asyncio.gather(*(voter_view(v) for v in sc.voters),
                         *(receipt(*r) for r in [*sc.receipts, *current]))
    for m in sc.meetings:
        state = await sc.chair.ok("procedure:state", {"meeting_id": m})
        for vote in state["votes"]:
            if vote["id"] in sc.closed:  # closed before an earlier kill: frozen since
                assert vote["final"] and vote["result"] == sc.closed[vote["id"]], vote
                continue
            tally = expected[vote["id"]]
            assert vote["turnout"]["cast"] == sum(tally.values()), (vote, tally)
            if not vote["secret"]:
                assert vote["result"]["counts"] == [tally[o] for o in range(OPTIONS)], vote
            else:
                assert vote["result"] is None  # no live counts for a secret vote


async def close_votes(sc: Scenario, kill_after: float | None, outcomes: Counter[str]) -> None:
    """Close this cycle's votes (both at once, as two chairs' consoles could); with
    `kill_after`, SIGKILL the server that many seconds after sending the closes, restart and
    resend them: a close that committed answers `vote_closed`. Either way the final counts
    are exactly the acknowledged ballots, and stay so."""
    current = list(sc.voters[0].ballots)
    closes = [asyncio.create_task(sc.chair.call("vote:close", {
        "meeting_id": b.meeting_id, "vote_id": b.vote_id})) for b in current]
    if kill_after is not None:
        await asyncio.sleep(kill_after)
        sc.server.kill()
        for task in closes:
            task.cancel()
        await asyncio.gather(*closes, return_exceptions=True)
        sc.server.start()
        await sc.reconnect()
        closes = [asyncio.create_task(sc.chair.call("vote:close", {
            "meeting_id": b.meeting_id, "vote_id": b.vote_id})) for b in current]
    states = {}
    for b0, task in zip(current, closes, strict=True):
        ack = await task
        if ack["ok"]:
            outcomes["closed after the kill" if kill_after is not None else "closed"] += 1
            vote = ack["result"]
        else:
            assert kill_after is not None and ack["error"]["code"] == "vote_closed", ack
            outcomes["closed before the kill"] += 1
            if b0.meeting_id not in states:
                states[b0.meeting_id] = await sc.chair.ok("procedure:state",
                                                          {"meeting_id": b0.meeting_id})
            (vote,) = [v for v in states[b0.meeting_id]["votes"] if v["id"] == b0.vote_id]
        mine = [b for v in sc.voters for b in v.ballots if b.vote_id == b0.vote_id]
        tally = Counter(b.option for b in mine if b.option is not None)
        result = vote["result"]
        assert vote["final"] and result["counts"] == [tally[o] for o in range(OPTIONS)], \
            (vote, tally)
        assert result["cast"] == sum(result["counts"]) == sum(tally.values()), result
        sc.closed[b0.vote_id] = result
    sc.receipts += [(v.client, b.meeting_id, b.vote_id, b.receipt, b.option)
                    for v in sc.voters for b in v.ballots
                    if b.secret and b.receipt is not None and b.option is not None]
    if kill_after is not None:
        await check_votes(sc)  # earlier results frozen, every receipt counted

