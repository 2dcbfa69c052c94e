"""The Đồng Hới rehearsal's steps, on a tree of real nodes (testkit/province.py): the
meeting at every node with its delegates' tablets, and each step of issue 13's rehearsal,
returning what it measured. Shared by tests/server/cascade/test_rehearsal.py and
bench/province.py.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from testkit.cascade_documents import Tablet as Reader
from testkit.cascade_documents import first_page_everywhere, read_blob_bytes
from testkit.province import (
    Node,
    ProvinceTree,
    Tablet,
    cascaded_meeting,
    make_pdf,
    seed_delegates,
    until,
)

TITLE = "Dự thảo Nghị quyết phát triển kinh tế - xã hội năm 2027"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))], 1)


def path_delay_ms(tree: ProvinceTree, node: Node) -> float:
    """The one-way delays on the way from the province to `node`."""
    delay = 0.0
    if node is not tree.province:
        delay += tree.city.link.impairment.rtt_ms / 2 if tree.city.link else 0
    if node in tree.wards and node.link is not None:
        delay += node.link.impairment.rtt_ms / 2
    return delay


def field_is(name: str, value: Any) -> Callable[[Any], bool]:
    return lambda event: isinstance(event, dict) and event.get(name) == value


def queued(person: str) -> Callable[[Any], bool]:
    return lambda event: any(q.get("name") == person for q in event.get("queue", []))


def vote_is(name: str, value: Any, status: str) -> Callable[[Any], bool]:
    return lambda event: event["vote"][name] == value and event["vote"]["status"] == status


class Meeting:
    """The meeting at every node: its id there, its delegates' tablets, the chair."""

    def __init__(self, tree: ProvinceTree) -> None:
        self.tree = tree
        self.ids: dict[str, int] = {}
        self.tablets: dict[str, list[Tablet]] = {}
        self.chair: Tablet | None = None
        self.item = 0

    def all_tablets(self) -> list[Tablet]:
        return [t for ts in self.tablets.values() for t in ts]


async def prepare(tree: ProvinceTree, province: int, city: int, ward: int) -> Meeting:
    """The meeting at every node, with that many delegates (tablets) checked in there."""
    per = {tree.province.unit: province, tree.city.unit: city,
           **{w.unit: ward for w in tree.wards}}
    seats = {w.unit: ward + 1 for w in tree.wards}  # a seat to spare at each
    seats[tree.city.unit] = city + 1 + sum(seats.values())
    chair_http, meeting_id, _, mirrors = await cascaded_meeting(tree, seats)
    m = Meeting(tree)
    m.ids = {tree.province.unit: meeting_id, **mirrors}
    for node in tree.nodes:
        names = await seed_delegates(node, m.ids[node.unit], per[node.unit])
        m.tablets[node.unit] = list(await asyncio.gather(
            *(Tablet(node, n, m.ids[node.unit]).open() for n in names)))
        await asyncio.gather(*(t.call("attendance:check_in", {
            "meeting_id": m.ids[node.unit], "mode": "online"}) for t in m.tablets[node.unit]))
    m.chair = await Tablet(tree.province, "chutri", meeting_id).open()
    status, item = await chair_http.call("POST", f"/api/meetings/{meeting_id}/agenda",
                                         {"title": "Kinh tế - xã hội năm 2027"})
    assert status == 201, item
    m.item = item["id"]
    await m.chair.call("agenda:set_current", {"meeting_id": meeting_id, "item_id": m.item})
    return m


async def upload(node: Node, meeting_id: int, path: Path) -> dict[str, Any]:
    secretary = await node.login("thuky")
    form = aiohttp.FormData()
    form.add_field("file", path.read_bytes(), filename=path.name,
                   content_type="application/pdf")
    form.add_field("title", TITLE)
    async with secretary.session.post(f"{node.base}/api/meetings/{meeting_id}/documents",
                                      data=form, headers={"X-CSRF-Token": secretary.csrf}) as r:
        doc = await r.json()
        assert r.status == 202, doc

    async def ready() -> dict[str, Any] | None:
        _, body = await secretary.call("GET", f"/api/documents/{doc['id']}")
        return body if body.get("status") in ("ready", "ready_with_warnings") else None
    await until(ready, 120, "the PDF processed at the province", every=0.2)
    doc["publish"] = lambda: secretary.call("POST", f"/api/documents/{doc['id']}/publish",
                                            {"published": True})
    return doc


async def readers(tree: ProvinceTree, m: Meeting, poll: bool = False
                  ) -> tuple[list[Reader], Node, Node]:
    """HTTP readers of documents: 10 at the first ward, 1 at the second, one per delegate
    elsewhere (each a logged-in session), following their delegate's live channel at that
    node (testkit/cascade_documents.py), or polling if `poll`."""
    ten, one = tree.wards[0], tree.wards[1]
    out = []
    for node in tree.nodes:
        live = {t.username: t for t in m.tablets[node.unit]}
        names = list(live)
        wanted = names * 2 if node is ten else names[:1] if node is one else names
        for name in wanted:
            http = await node.login(name)
            out.append(Reader(http.session, node.base, m.ids[node.unit],
                              None if poll else live[name]))
    return out, ten, one


async def document_phase(tree: ProvinceTree, m: Meeting, root: Path, pages: int = 30,
                         size: int = 5_000_000,
                         measure: Callable[[], Callable[[], dict[str, Any]]] | None = None,
                         poll: bool = False) -> dict[str, Any]:
    """Published at the province: page 1 on every tablet, and the bytes on two ward links
    (10 readers there, 1 there) over the PDF's size. `measure()` is called at the
    publication, what it returns once page 1 is everywhere: its figures join the result.
    The readers fetch page 1 when their live channel says the document is ready, or poll
    every 50 ms if `poll`."""
    pdf = make_pdf(root / "nghi-quyet.pdf", pages, size)
    size = pdf.stat().st_size
    doc = await upload(tree.province, m.ids[tree.province.unit], pdf)
    tablets, ten, one = await readers(tree, m, poll)
    before = {n.unit: n.link.down.bytes for n in (ten, one) if n.link}
    started, published_at = time.monotonic(), time.time()
    end = measure() if measure else None
    status, _ = await doc.pop("publish")()
    assert status == 200
    seconds = await first_page_everywhere(tablets, TITLE, started, timeout=120)
    measured = end() if end else {}
    unit_of = {n.base: n.unit for n in tree.nodes}
    by_node: dict[str, float] = {}
    for reader, took in zip(tablets, seconds, strict=True):
        unit = unit_of[reader.base]
        by_node[unit] = round(max(by_node.get(unit, 0.0), took), 2)

    admins = {node.unit: await node.login("quantri") for node in (ten, one)}

    last: dict[str, tuple[float, float]] = {}  # unit -> (blob bytes, since when)

    async def settled() -> bool:
        """The whole file is at both wards: their document bytes (the sanitised copy that
        crosses, whose size differs from the upload's a little) stopped growing for 2 s."""
        now, done = time.monotonic(), True
        for n in (ten, one):
            got = await read_blob_bytes(admins[n.unit].session, n.base)
            if n.unit not in last or last[n.unit][0] != got:
                last[n.unit] = (got, now)
            done &= got >= size / 2 and now - last[n.unit][1] >= 2.0
        return done
    await until(settled, 120, "the whole document at the wards", every=0.25)
    await asyncio.sleep(1.0)  # the last bytes counted
    ratios = {unit: (tree_node_bytes(tree, unit) - before[unit]) / size for unit in before}
    for reader in tablets:
        await reader.session.close()
    result = {"phase": "document", "file_bytes": size, "tablets": len(tablets),
              "tablets_poll": poll,
              "first_page_p50_s": round(statistics.median(seconds), 2),
              "first_page_max_s": round(max(seconds), 2),
              "first_page_max_s_by_node": by_node,
              # the nodes' server.log lines (UTC) of the document's steps follow this time
              "published_at": time.strftime("%H:%M:%S", time.gmtime(published_at))
              + f".{int(published_at % 1 * 1000):03d}",
              "link_bytes_ratio_10_readers": round(ratios[ten.unit], 3),
              "link_bytes_ratio_1_reader": round(ratios[one.unit], 3),
              "document_bytes_received": {u: got for u, (got, _) in last.items()},
              **measured}
    return result


def tree_node_bytes(tree: ProvinceTree, unit: str) -> int:
    node = next(n for n in tree.nodes if n.unit == unit)
    assert node.link is not None
    return node.link.down.bytes


async def local_doc_ids(m: Meeting) -> dict[str, int]:
    """The document's id at every node (each node has its own copy)."""
    ids = {}
    for unit, tablets in m.tablets.items():
        http = tablets[0].http
        assert http is not None
        _, body = await http.call("GET", f"/api/meetings/{m.ids[unit]}/documents")
        ids[unit] = next(d["id"] for g in body["groups"] for d in g["documents"]
                         if d["title"] == TITLE)
    return ids


async def page_turns(tree: ProvinceTree, m: Meeting, doc_id: int, pages: range
                     ) -> list[tuple[float, float, str]]:
    """(latency ms, path one-way delay ms, node) for every tablet and turn."""
    assert m.chair is not None
    out = []
    for page in pages:
        sent = time.monotonic()
        await m.chair.call("present:update", {"document_id": doc_id, "page": page, "zoom": 1.0,
                                              "scroll_x": 0, "scroll_y": 0})
        for node in tree.nodes:
            for tablet in m.tablets[node.unit]:
                at, _ = await tablet.wait_for("present:state", field_is("page", page),
                                              timeout=30, since=sent)
                out.append(((at - sent) * 1000, path_delay_ms(tree, node), node.unit))
        await asyncio.sleep(0.2)
    return out


async def floor_phase(tree: ProvinceTree, m: Meeting) -> list[tuple[float, str]]:
    assert m.chair is not None
    out = []
    for node in [tree.city, *tree.wards]:
        asker = m.tablets[node.unit][0]
        sent = time.monotonic()
        asked = await asker.call("floor:request", {"meeting_id": m.ids[node.unit]})
        name = asker.http.user["full_name"] if asker.http else ""
        at, _ = await m.chair.wait_for("floor:changed", queued(name), timeout=30, since=sent)
        out.append(((at - sent) * 1000, node.unit))
        await asker.call("floor:withdraw", {"meeting_id": m.ids[node.unit],
                                            "request_id": asked["request_id"]})
    return out


async def open_vote(m: Meeting, question: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The vote at the province and its id on every node (as each node's tablets see it)."""
    assert m.chair is not None
    sent = time.monotonic()
    vote = await m.chair.call("vote:open", {"meeting_id": m.ids[m.tree.province.unit],
                                            "agenda_item_id": m.item, "question": question})
    ids = {m.tree.province.unit: vote["id"]}
    for unit, tablets in m.tablets.items():
        if unit != m.tree.province.unit:
            _, event = await tablets[0].wait_for("vote:updated", vote_is("question", question,
                                                                          "open"), 30, since=sent)
            ids[unit] = event["vote"]["id"]
    return vote, ids


async def cast_all(m: Meeting, ids: dict[str, int], units: list[str]) -> int:
    casts = [t.call("vote:cast", {"meeting_id": m.ids[u], "vote_id": ids[u], "option": 0,
                                  "seq": 1}) for u in units for t in m.tablets[u]]
    await asyncio.gather(*casts)
    return len(casts)


async def province_vote(m: Meeting, vote_id: int) -> dict[str, Any]:
    """The vote as the province's procedure state shows it."""
    http = m.tablets[m.tree.province.unit][0].http
    assert http is not None
    _, body = await http.call("GET", f"/api/meetings/{m.ids[m.tree.province.unit]}/procedure")
    return next(v for v in body.get("votes", []) if v["id"] == vote_id)  # type: ignore[no-any-return]


async def province_count(m: Meeting, vote_id: int) -> int:
    """Ballots the province counts for the vote (its own and every node's)."""
    vote = await province_vote(m, vote_id)
    counted = vote.get("result") or vote.get("turnout") or {}
    return int(counted.get("cast") or 0)


async def vote_phase(m: Meeting) -> list[float]:
    assert m.chair is not None
    vote, ids = await open_vote(m, "Thông qua Nghị quyết?")
    total = await cast_all(m, ids, list(m.tablets))
    await until(lambda: _at_least(m, vote["id"], total), 30, "every ballot at the province",
                every=0.1)
    sent = time.monotonic()
    await m.chair.call("vote:close", {"meeting_id": m.ids[m.tree.province.unit],
                                      "vote_id": vote["id"]})
    out = []
    for unit, tablets in m.tablets.items():
        for tablet in tablets:
            at, _ = await tablet.wait_for("vote:updated", vote_is("id", ids[unit], "closed"),
                                          30, since=sent)
            out.append((at - sent) * 1000)
    return out


async def _at_least(m: Meeting, vote_id: int, total: int) -> bool:
    return await province_count(m, vote_id) >= total


def ink_op(page: int) -> dict[str, Any]:
    return {"op_id": str(uuid.uuid4()), "type": "add", "page": page,
            "annotation": {"id": str(uuid.uuid4()), "kind": "ink", "visibility": "meeting",
                           "data": {"points": [[72, 72], [200, 120], [300, 90]],
                                    "color": "#c62828", "width": 2.5}}}


async def outage_phase(tree: ProvinceTree, m: Meeting, docs: dict[str, int], seconds: float
                       ) -> dict[str, Any]:
    """Cut the first ward; its delegates vote and draw shared ink, the chair turns pages;
    restore; count what the province has."""
    assert m.chair is not None
    ward = tree.wards[0]
    assert ward.link is not None
    vote, ids = await open_vote(m, "Thông qua phụ lục?")
    tablets = m.tablets[ward.unit]
    for t in tablets:
        await t.call("document:subscribe", {"document_id": docs[ward.unit]})
    ward.link.cut()
    cut_at = time.monotonic()
    ballots = await cast_all(m, ids, [ward.unit])
    inks = []
    for t in tablets:
        op = ink_op(page=0)
        await t.call("annotation:op", {"document_id": docs[ward.unit], "version": 1, "op": op})
        inks.append(op["annotation"]["id"])
    await m.chair.call("present:update", {"document_id": docs[tree.province.unit], "page": 7,
                                          "zoom": 1.0, "scroll_x": 0, "scroll_y": 0})
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - cut_at)))
    await ward.link.restore()
    back = time.monotonic()
    province_reader = m.tablets[tree.province.unit][0]
    await province_reader.call("document:subscribe", {"document_id": docs[tree.province.unit]})

    async def consistent() -> bool:
        if await province_count(m, vote["id"]) < ballots:
            return False
        snap = await province_reader.call("annotation:snapshot", {
            "document_id": docs[tree.province.unit], "version": 1})
        have = {a["id"] for p in snap["pages"] for a in p["annotations"]}
        if not set(inks) <= have:
            return False
        state = await tablets[0].call("present:get", {"meeting_id": m.ids[ward.unit]})
        return bool(state.get("page") == 7)
    try:
        await until(consistent, 120, "the ward consistent with the province", every=0.1)
        resync = time.monotonic() - back
    except AssertionError:
        resync = float("nan")
    counted = await province_count(m, vote["id"])
    snap = await province_reader.call("annotation:snapshot", {
        "document_id": docs[tree.province.unit], "version": 1})
    have = {a["id"] for p in snap["pages"] for a in p["annotations"]}
    await m.chair.call("vote:close", {"meeting_id": m.ids[tree.province.unit],
                                      "vote_id": vote["id"]})
    return {"phase": "outage", "outage_s": seconds, "ballots_acknowledged": ballots,
            "ink_acknowledged": len(inks), "ballots_missing": max(0, ballots - counted),
            "ink_missing": len(set(inks) - have), "resync_s": round(resync, 2)}


async def speak_phase(tree: ProvinceTree, m: Meeting) -> dict[str, Any]:
    """A ward delegate asks for the floor; the province chair sees the request marked with
    its node, grants it; the ward sees its delegate speaking; the chair ends the turn."""
    assert m.chair is not None
    ward = tree.wards[0]
    speaker = m.tablets[ward.unit][0]
    name = speaker.http.user["full_name"] if speaker.http else ""
    sent = time.monotonic()
    await speaker.call("floor:request", {"meeting_id": m.ids[ward.unit]})
    _, event = await m.chair.wait_for("floor:changed", queued(name), timeout=30, since=sent)
    entry = next(q for q in event["queue"] if q.get("name") == name)
    sent = time.monotonic()
    await m.chair.call("floor:grant", {"meeting_id": m.ids[tree.province.unit],
                                       "request_id": entry["id"], "limit_seconds": 120})
    _, mine = await speaker.wait_for("floor:changed", holder_is(name), timeout=30, since=sent)
    city_view = m.tablets[tree.city.unit][0]
    _, at_city = await city_view.wait_for("floor:changed", holder_is(name), timeout=30,
                                          since=sent)
    await asyncio.sleep(1.0)
    sent = time.monotonic()
    await m.chair.call("floor:end", {"meeting_id": m.ids[tree.province.unit]})
    _, done = await speaker.wait_for("floor:changed", holder_is(None), timeout=30, since=sent)
    return {"queued": entry, "holder_at_ward": mine["holder"],
            "holder_at_city": at_city["holder"], "totals_at_ward": done.get("totals")}


def holder_is(person: str | None) -> Callable[[Any], bool]:
    def match(event: Any) -> bool:
        holder = event.get("holder")
        return holder is None if person is None else bool(holder) and holder["name"] == person
    return match


async def vote_round(m: Meeting, question: str, secret: bool) -> dict[str, Any]:
    """Everyone votes (option 0) on their own node; the chair closes; the result as the
    province and every tablet saw it."""
    assert m.chair is not None
    sent = time.monotonic()
    vote = await m.chair.call("vote:open", {"meeting_id": m.ids[m.tree.province.unit],
                                            "agenda_item_id": m.item, "question": question,
                                            "secret": secret})
    ids = {m.tree.province.unit: vote["id"]}
    for unit, tablets in m.tablets.items():
        if unit != m.tree.province.unit:
            _, event = await tablets[0].wait_for("vote:updated", vote_is(
                "question", question, "open"), 30, since=sent)
            ids[unit] = event["vote"]["id"]
    total = await cast_all(m, ids, list(m.tablets))
    # As a chair does before closing: every node's turnout has reached the province (a
    # secret vote's counts cross the links once the vote closes, its turnout before).
    await until(lambda: _at_least(m, vote["id"], total), 30, "ballots at the province",
                every=0.1)
    sent = time.monotonic()
    await m.chair.call("vote:close", {"meeting_id": m.ids[m.tree.province.unit],
                                      "vote_id": vote["id"]})
    seen = {}
    for unit, tablets in m.tablets.items():
        for tablet in tablets:
            _, event = await tablet.wait_for("vote:updated", vote_is("id", ids[unit],
                                                                     "closed"), 30, since=sent)
            seen[f"{tablet.username}@{unit}"] = event["vote"]
    try:
        final = await until(lambda: _final_at_province(m, vote["id"], total), 30,
                            "the province's final result with every node's ballots", every=0.2)
    except AssertionError as exc:
        found = await province_vote(m, vote["id"])
        raise AssertionError(f"{exc}; the province has {found}") from None
    return {"total": total, "province": final, "tablets": seen}


async def _final_at_province(m: Meeting, vote_id: int, total: int) -> dict[str, Any] | None:
    vote = await province_vote(m, vote_id)
    result = vote.get("result") or {}
    counted = sum(result.get("totals") or [])
    return vote if vote["status"] == "closed" and vote.get("final") and counted == total \
        else None


async def minutes_text(tree: ProvinceTree, m: Meeting) -> str:
    """The province secretary generates the minutes; their PDF's text."""
    import pymupdf

    secretary = await tree.province.login("thuky")
    meeting_id = m.ids[tree.province.unit]
    status, body = await secretary.call("POST", f"/api/meetings/{meeting_id}/minutes")
    assert status == 201, body
    async with secretary.session.get(
            f"{tree.province.base}/api/meetings/{meeting_id}/minutes/latest.pdf") as r:
        assert r.status == 200, await r.text()
        data = await r.read()
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        return "\n".join(page.get_text() for page in doc)


async def search_everywhere(tree: ProvinceTree, m: Meeting, query: str,
                            timeout: float = 90.0) -> dict[str, list[int]]:
    """The pages a search of the meeting's documents finds at every node, once each node
    has processed its copy (or `timeout` passed: then what each found)."""
    found: dict[str, list[int]] = {}

    async def everywhere() -> bool:
        for node in tree.nodes:
            http = m.tablets[node.unit][0].http
            assert http is not None
            status, body = await http.call(
                "GET", f"/api/meetings/{m.ids[node.unit]}/documents/search?q={query}")
            assert status == 200, (node.unit, body)
            found[node.unit] = sorted({hit["page"] for hit in body["hits"]})
        return all(found.values())
    try:
        await until(everywhere, timeout, "search at every node", every=0.5)
    except AssertionError:
        pass
    return found
