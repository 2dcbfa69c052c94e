"""A secret vote cannot be traced to its voters from the database, yet every voter can
check with their receipt that their ballot was counted."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import text
from sqlmodel import SQLModel

import server.schema  # noqa: F401  (every table on the metadata)
from server import keys
from tests.conftest import Harness
from tests.server.procedure_helpers import add_item, close_all, open_demo

DELEGATES = ("daibieu", "daibieu2", "daibieu3")
OPTION_KEY = re.compile(r'"option"\s*:')


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
        assert ballot_cols == {"id", "vote_id", "option", "receipt_hash"}  # no user, no time
        ballots = (await s.exec(text("SELECT * FROM voteballot"))).mappings().all()  # type: ignore[call-overload]
        assert sorted(b["option"] for b in ballots) == [0, 1, 2]
        assert all(re.fullmatch(r"[0-9a-f]{32}", b["id"]) for b in ballots)  # random UUIDs
        if db.is_sqlite:
            sql = (await s.exec(text(  # type: ignore[call-overload]
                "SELECT sql FROM sqlite_master WHERE name = 'voteballot'"))).scalar_one()
            assert "WITHOUT ROWID" in sql.upper()  # no hidden insertion order
        else:
            xmins = (await s.exec(text("SELECT xmin::text FROM voteballot"))).scalars().all()  # type: ignore[call-overload]
            cast_xmins = (await s.exec(text(  # type: ignore[call-overload]
                "SELECT xmin::text FROM voteparticipation"))).scalars().all()
            assert len(set(xmins)) == 1 and not set(xmins) & set(cast_xmins)
        logged = (await s.exec(text(  # type: ignore[call-overload]
            "SELECT data_json FROM auditentry WHERE kind = 'ballot_cast'"))).scalars().all()
        assert logged == [f'{{"vote_id":{vote["id"]}}}'] * 3
    await close_all(people)
