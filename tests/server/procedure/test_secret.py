"""A secret vote cannot be traced to its voters from the database, yet every voter can
check with their receipt that their ballot was counted."""

from __future__ import annotations

import asyncio
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

import server.core.schema  # noqa: F401  (every table on the metadata)
from server.core import keys
from tests.conftest import Harness, start_harness
from tests.server import ballot_linkage
from tests.server.core.test_realtime import connect
from tests.server.procedure_helpers import EVENTS, Member, add_item, close_all, open_demo
from tests.server.sqlite_file import DatabaseFiles

DELEGATES = ("daibieu", "daibieu2", "daibieu3")
OPTION_KEY = re.compile(r'"option"\s*:')
VOTERS = 24
OPTIONS = ["Ông A", "Bà B", "Ông C", "Bà D", "Ông E", "Bà G"]
# Right guesses a blind attacker gets: 4 on average; 14 or more: p < 1e-5 (24 voters, 6
# options, 4 voters each). An attack doing better than this links voters to ballots.
CHANCE_LIMIT = 13


def user_columns(table: Any) -> set[str]:
    """Columns that name a person: foreign keys to user.id (and the user table's own id)."""
    cols = {fk.parent.name for fk in table.foreign_keys if fk.column.table.name == "user"}
    return cols | ({"id"} if table.name == "user" else set())


async def test_secret_ballots_are_unlinkable_and_receipts_verify(hopso: Harness) -> None:
    m, people = await open_demo(hopso, "thuky", *DELEGATES)
    item = await add_item(people["thuky"], m, "Bầu Trưởng ban")
    for name in DELEGATES:
        await people[name].ok("attendance:check_in", {"meeting_id": m, "mode": "in_person"})
    vote = await people["chutri"].ok("vote:open", {
        "meeting_id": m, "agenda_item_id": item["id"], "question": "Bầu Trưởng ban",
        "secret": True, "options": ["Ông A", "Bà B", "Ông C"]})
    receipts = {}
    for name, option in zip(DELEGATES, (0, 1, 2)):
        cast = await people[name].ok("vote:cast", {"meeting_id": m, "vote_id": vote["id"],
                                                   "option": option, "seq": 1})
        receipts[name] = (cast["receipt"], option)
    turnout = await people["chutri"].wait_for(
        "vote:updated", lambda e: (e["vote"]["turnout"] or {}).get("cast") == 3)
    assert turnout["vote"]["result"] is None  # no live counts for a secret vote
    pending = await people["chutri"].ok("vote:pending", {"meeting_id": m, "vote_id": vote["id"]})
    assert pending == {"vote_id": vote["id"], "count": 0, "names": None}
    closed = await people["chutri"].ok("vote:close", {"meeting_id": m, "vote_id": vote["id"]})
    assert closed["result"]["totals"] == [1, 1, 1]

    for name, (code, option) in receipts.items():
        status, check = await people[name].http.call(
            "POST", f"/api/meetings/{m}/receipts/check", {"receipt": code})
        assert status == 200 and check["counted"] and check["option"] == option, check
        assert check["option_label"] == ["Ông A", "Bà B", "Ông C"][option]

    voter_ids = {people[n].http.user["id"] for n in DELEGATES}
    db = hopso.server.app[keys.DB]
    async with db.session() as s:
        for table in SQLModel.metadata.sorted_tables:
            people_cols = user_columns(table)
            rows = (await s.exec(text(f'SELECT * FROM "{table.name}"'))).mappings().all()  # type: ignore[call-overload]
            for row in rows:
                voters_here = {row[c] for c in people_cols if row.get(c) is not None} & voter_ids
                if not voters_here:
                    continue
                for column, value in row.items():
                    if column == "option":
                        assert value is None, (table.name, dict(row))
                    if isinstance(value, str):
                        assert not OPTION_KEY.search(value), (table.name, dict(row))
        ballot_cols = {c.name for c in SQLModel.metadata.tables["voteballot"].columns}
        assert ballot_cols == {"vote_id", "receipt_hash", "option"}  # no user, no time
        ballots = (await s.exec(text("SELECT * FROM voteballot"))).mappings().all()  # type: ignore[call-overload]
        assert sorted(b["option"] for b in ballots) == [0, 1, 2]
        assert (await s.exec(text("SELECT count(*) FROM sealedballot"))).scalar_one() == 0  # type: ignore[call-overload]
        if db.is_sqlite:
            sql = (await s.exec(text(  # type: ignore[call-overload]
                "SELECT sql FROM sqlite_master WHERE name = 'voteballot'"))).scalar_one()
            assert "WITHOUT ROWID" in sql.upper()  # no hidden insertion order
        else:
            xmins = (await s.exec(text("SELECT xmin::text FROM voteballot"))).scalars().all()  # type: ignore[call-overload]
            cast_xmins = (await s.exec(text(  # type: ignore[call-overload]
                "SELECT xmin::text FROM voteparticipation"))).scalars().all()
            assert len(set(xmins)) == 1 and not set(xmins) & set(cast_xmins)
        # Participation in a secret vote is audited once, at close, as a sorted set.
        kinds = (await s.exec(text("SELECT kind, data_json FROM auditentry"))).all()  # type: ignore[call-overload]
        assert not [k for k, _ in kinds if k in ("ballot_cast", "ballot_changed")]
        closing = [json.loads(d) for k, d in kinds if k == "vote_closed"]
        assert closing[-1]["voters"] == sorted(voter_ids)
    await close_all(people)


async def add_voters(h: Harness, secretary: Member, meeting_id: int, count: int
                     ) -> dict[int, Member]:
    """`count` delegates of the meeting, logged in, connected and checked in: user id ->."""
    admin = await h.login("quantri")
    out = {}
    for n in range(count):
        name, password = f"bau{n:02d}", "mat-khau-bau-cu-1"
        status, user = await admin.call("POST", "/api/users", {
            "username": name, "full_name": f"Đại biểu {n}", "password": password,
            "role": "delegate"})
        assert status == 201, user
        status, body = await secretary.http.call("POST", f"/api/meetings/{meeting_id}/members",
                                                 {"role": "delegate", "user_id": user["id"]})
        assert status == 201, body
        http = h.anonymous()
        status, body = await http.call("POST", "/api/login", {"username": name,
                                                              "password": password})
        assert status == 200, body
        http.csrf, http.user = body["csrf_token"], body["user"]
        member = Member(name, http, await connect(h, http))
        for event in EVENTS:
            member.sio.on(event, lambda *_: None)
        assert (await member.sio.call("meeting:join", {"meeting_id": meeting_id}))["ok"]
        await member.ok("attendance:check_in", {"meeting_id": meeting_id, "mode": "online"})
        out[user["id"]] = member
    return out


async def scrubbed(path: Path, timeout: float = 30.0) -> None:
    """Wait for the server to truncate the WAL after a close (or give up and let the
    assertions say what is left)."""
    wal = path.with_name(path.name + "-wal")
    deadline = asyncio.get_running_loop().time() + timeout
    while wal.exists() and wal.stat().st_size and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)


async def test_a_resent_secret_ballot_is_answered_again_with_the_clients_receipt(
        hopso: Harness) -> None:
    """The client makes the receipt and sends it with its first ballot: when that ack is
    lost, the resend (same seq, same code) gets the same answer, and counts once."""
    m, people = await open_demo(hopso, "thuky", *DELEGATES)
    item = await add_item(people["thuky"], m, "Bầu Trưởng ban")
    for name in DELEGATES:
        await people[name].ok("attendance:check_in", {"meeting_id": m, "mode": "in_person"})
    vote = await people["chutri"].ok("vote:open", {
        "meeting_id": m, "agenda_item_id": item["id"], "question": "Bầu Trưởng ban",
        "secret": True})
    ballot = {"meeting_id": m, "vote_id": vote["id"], "option": 1, "seq": 7}
    d1 = people["daibieu"]
    for bad in ("7K3M-9QXR-2HDF", "7K3M-9QXR-2HDF-W8NI", "0000-0000-0000-0000", "x" * 64):
        ack = await d1.emit("vote:cast", {**ballot, "receipt": bad})
        assert ack["error"]["code"] == "invalid" and set(ack["error"]) == {"code", "message"}
    assert (await d1.error("vote:cast", {**ballot, "receipt": "x" * 65})) == "invalid"
    code = "7K3M-9QXR-2HDF-W8NB"
    first = await d1.ok("vote:cast", {**ballot, "receipt": code})
    assert first == {"vote_id": vote["id"], "option": 1, "changed": False, "receipt": code}
    again = await d1.ok("vote:cast", {**ballot, "receipt": code.lower()})
    assert again == {**first, "replayed": True}
    assert await people["daibieu2"].error(  # someone else's code: `invalid`, nothing more
        "vote:cast", {**ballot, "receipt": code}) == "invalid"
    closed = await people["chutri"].ok("vote:close", {"meeting_id": m, "vote_id": vote["id"]})
    assert closed["result"]["totals"] == [0, 1, 0] and closed["result"]["cast"] == 1
    status, check = await d1.http.call("POST", f"/api/meetings/{m}/receipts/check",
                                       {"receipt": code})
    assert status == 200 and check["counted"] and check["option"] == 1
    await close_all(people)


async def test_the_database_files_never_link_a_voter_to_a_secret_ballot(
        hopso_sqlite: Harness) -> None:
    """The raw SQLite files (main file pages, free space, freelist, every WAL frame) read as
    an attacker would, during and after secret votes with and without changed ballots."""
    h = hopso_sqlite
    rnd = random.Random(20270114)
    path = h.settings.data_dir / "hopso.sqlite3"
    m, people = await open_demo(h, "thuky")
    item = await add_item(people["thuky"], m, "Bầu Trưởng ban")
    voters = await add_voters(h, people["thuky"], m, VOTERS)
    for allow_change in (False, True):
        vote = await people["chutri"].ok("vote:open", {
            "meeting_id": m, "agenda_item_id": item["id"], "question": "Bầu Trưởng ban",
            "secret": True, "allow_change": allow_change, "options": OPTIONS})
        choices = [n % len(OPTIONS) for n in range(VOTERS)]
        rnd.shuffle(choices)
        truth = dict(zip(voters, choices))
        order = list(voters)
        rnd.shuffle(order)
        receipts = {}
        for user in order:  # one at a time: each ballot its own transaction
            cast = await voters[user].ok("vote:cast", {
                "meeting_id": m, "vote_id": vote["id"], "option": truth[user], "seq": 1})
            receipts[user] = cast["receipt"]
        if allow_change:
            for user in rnd.sample(order, VOTERS // 2):
                truth[user] = (truth[user] + rnd.randrange(1, len(OPTIONS))) % len(OPTIONS)
                await voters[user].ok("vote:cast", {
                    "meeting_id": m, "vote_id": vote["id"], "option": truth[user], "seq": 2,
                    "receipt": receipts[user]})

        # While the vote is open: no option anywhere in the files, old frames included.
        during = DatabaseFiles.read(path)
        seen = [p for c in during.commits() for p in c] + during.pages()
        assert ballot_linkage.ballots(seen, vote["id"], len(OPTIONS)) == []
        sealed = [bytes(v) for p in during.pages() for c in p.cells for v in c.values
                  if isinstance(v, bytes) and vote["id"] in c.values]
        assert len(sealed) == VOTERS  # one sealed ballot each, opaque without the key

        closed = await people["chutri"].ok("vote:close", {"meeting_id": m,
                                                          "vote_id": vote["id"]})
        assert closed["result"]["counts"] == [list(truth.values()).count(o)
                                              for o in range(len(OPTIONS))]
        await scrubbed(path)
        after = DatabaseFiles.read(path)
        for attack, guess in ballot_linkage.attacks(after, vote["id"], len(OPTIONS),
                                                    set(voters)).items():
            right = ballot_linkage.score(guess, truth)
            assert right <= CHANCE_LIMIT, f"{attack}: {right} of {VOTERS} voters linked"
        found = ballot_linkage.ballots(after.pages(), vote["id"], len(OPTIONS))
        assert len(found) == VOTERS
        for page in {b.page for b in found}:  # written in the order of the random hashes
            cells = ballot_linkage.physical_order([b for b in found if b.page == page])
            assert [b.receipt for b in cells] == sorted(b.receipt for b in cells)
        assert after.wal == b"", "the WAL still holds frames from while the vote was open"
        needles = sealed + [b.receipt.encode() for b in found]
        assert ballot_linkage.residue(after, needles) == []
        for user, code in receipts.items():  # and every voter can still check theirs
            status, check = await voters[user].http.call(
                "POST", f"/api/meetings/{m}/receipts/check", {"receipt": code})
            assert status == 200 and check["option"] == truth[user], check
    await close_all(people)
    await close_all(voters)  # type: ignore[arg-type]


@pytest.mark.postgres
async def test_on_postgresql_closed_ballots_keep_no_order_no_xmin_and_no_dead_rows(
        tmp_path: Path, postgres_url: str) -> None:
    h = await start_harness(tmp_path, postgres_url)
    try:
        m, people = await open_demo(h, "thuky")
        item = await add_item(people["thuky"], m, "Bầu Trưởng ban")
        voters = await add_voters(h, people["thuky"], m, 12)
        vote = await people["chutri"].ok("vote:open", {
            "meeting_id": m, "agenda_item_id": item["id"], "question": "Bầu Trưởng ban",
            "secret": True, "allow_change": True, "options": OPTIONS})
        rnd = random.Random(7)
        receipts = {}
        for user in rnd.sample(list(voters), len(voters)):
            receipts[user] = (await voters[user].ok("vote:cast", {
                "meeting_id": m, "vote_id": vote["id"], "option": rnd.randrange(6),
                "seq": 1}))["receipt"]
        for user in rnd.sample(list(voters), 4):  # changes leave dead row versions behind
            await voters[user].ok("vote:cast", {"meeting_id": m, "vote_id": vote["id"],
                                                "option": 0, "seq": 2,
                                                "receipt": receipts[user]})
        await people["chutri"].ok("vote:close", {"meeting_id": m, "vote_id": vote["id"]})
        db = h.server.app[keys.DB]

        async def dead_rows() -> int:
            async with db.session() as s:
                return sum([(await s.exec(text(  # type: ignore[call-overload]
                    f"SELECT dead_tuple_count FROM pgstattuple('{t}')"))).scalar_one()
                    for t in ("voteballot", "sealedballot")
                    if (await s.exec(text(f"SELECT to_regclass('{t}')"))).scalar_one()])  # type: ignore[call-overload]
        async with db.session() as s:
            await s.exec(text("CREATE EXTENSION IF NOT EXISTS pgstattuple"))  # type: ignore[call-overload]
        for _ in range(200):  # the server VACUUMs the ballot tables after the close
            if await dead_rows() == 0:
                break
            await asyncio.sleep(0.05)
        assert await dead_rows() == 0
        async with db.session() as s:
            rows = (await s.exec(text(  # type: ignore[call-overload]
                "SELECT receipt_hash, xmin::text AS x FROM voteballot WHERE vote_id = :v "
                "ORDER BY ctid").bindparams(v=vote["id"]))).all()
            cast_xmins = set((await s.exec(text(  # type: ignore[call-overload]
                "SELECT xmin::text FROM voteparticipation"))).scalars().all())
            sealed = (await s.exec(text("SELECT count(*) FROM sealedballot"))).scalar_one()  # type: ignore[call-overload]
        assert len(rows) == len(voters) and sealed == 0
        # Physical order: that of the random receipt hashes; one writer: the closing
        # transaction, which recorded no participation.
        assert [r.receipt_hash for r in rows] == sorted(r.receipt_hash for r in rows)
        assert len({r.x for r in rows}) == 1 and not {r.x for r in rows} & cast_xmins
        await close_all(people)
        await close_all(voters)  # type: ignore[arg-type]
    finally:
        await h.close()
        await h.server.close()
