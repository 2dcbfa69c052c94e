"""Upgrading a database with data in it, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import select

from rooms import agenda, attendance, ballot_box, votes
from rooms.ballot_seal import BallotKey, receipt_hash
from rooms.db import Database
from rooms.demo import DEMO_MEETING
from rooms.models import Meeting, MeetingRole
from rooms.procedure_models import AttendanceStatus, SealedBallot, VoteBallot
from rooms.users import find_user
from server.core.bootstrap import seed_demo
from server.core.migrate import alembic_config, upgrade
from server.core.passwords import password_hasher
from server.core.settings import Settings


async def upgrade_to(db: Database, *targets: str) -> None:
    config = alembic_config(db.url)

    def run(connection) -> None:  # type: ignore[no-untyped-def]
        config.attributes["connection"] = connection
        for target in targets:
            command.upgrade(config, target)
    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def test_0010_keeps_every_secret_ballot_and_drops_their_cast_order(
        tmp_path: Path, empty_database_url: str | None) -> None:
    settings = Settings(data_dir=tmp_path, database_url=empty_database_url)
    db = Database(settings.sqlalchemy_url)
    scripts = ScriptDirectory.from_config(alembic_config(db.url))
    # Every branch of the schema that does not build on 0010, then 0010's parent.
    before = [h for h in scripts.get_heads()
              if "0010" not in {r.revision for r in scripts.iterate_revisions(h, "base")}]
    await upgrade_to(db, *before, str(scripts.get_revision("0010").down_revision))
    await seed_demo(db, password_hasher(fast=True))
    codes = {n: f"ABCD-EFGH-JKMN-{n:04d}" for n in range(6)}
    async with db.session() as s:
        meeting = (await s.exec(select(Meeting).where(Meeting.title == DEMO_MEETING))).one()
        item = await agenda.add_item(s, meeting.id, agenda.ItemFields(title="Bầu"))  # type: ignore[arg-type]
        voters = [await find_user(s, n) for n in ("daibieu", "daibieu2", "daibieu3")]
        for vote_id, status in ((1, "closed"), (2, "open")):  # as a server before 0010 left them
            await s.exec(text(  # type: ignore[call-overload]
                "INSERT INTO vote (id, meeting_id, agenda_item_id, question, options_json, "
                "custom_options, secret, allow_change, status, opened_at) VALUES (:v, :m, :i, "
                "'?', '[\"agree\", \"disagree\", \"abstain\"]', false, true, true, :st, "
                "CURRENT_TIMESTAMP)").bindparams(v=vote_id, m=meeting.id, i=item.id, st=status))
        for n, code in codes.items():  # cast order: 0..5; the receipt order is another
            vote_id = 1 + n % 2
            await s.exec(text(  # type: ignore[call-overload]
                "INSERT INTO voteballot (id, vote_id, option, receipt_hash) "
                "VALUES (:id, :v, :o, :h)").bindparams(id=uuid.uuid4().hex, v=vote_id,
                                                       o=n % 3, h=receipt_hash(code)))
            if vote_id == 2:
                await s.exec(text(  # type: ignore[call-overload]
                    "INSERT INTO voteparticipation (vote_id, user_id, client_seq) "
                    "VALUES (2, :u, 1)").bindparams(u=voters[n // 2].id))  # type: ignore[union-attr]
    await upgrade(db)
    key = BallotKey.generate()
    async with db.session() as s:
        order = "ctid" if not db.is_sqlite else "vote_id, receipt_hash"
        rows = (await s.exec(text(  # type: ignore[call-overload]
            f"SELECT vote_id, receipt_hash, option FROM voteballot ORDER BY {order}"))).all()
        assert [tuple(r) for r in rows] == sorted(
            (1 + n % 2, receipt_hash(c), n % 3) for n, c in codes.items())
        # The vote left open keeps its plain ballots until they change or it closes.
        vote = await votes.get_vote(s, meeting.id, 2)  # type: ignore[arg-type]
        await attendance.check_in(s, meeting.id, voters[0], AttendanceStatus.online)  # type: ignore[arg-type]
        changed = await ballot_box.cast(s, vote, voters[0],  # type: ignore[arg-type]
                                        MeetingRole.delegate, 2, 2, codes[1], key=key)
        assert changed.changed and vote.seal_key_id == key.key_id
        assert (await votes.check_receipt(s, meeting.id, codes[1], key))["option"] == 2  # type: ignore[arg-type]
        assert len((await s.exec(select(SealedBallot))).all()) == 1
    async with db.session() as s:
        vote = await votes.get_vote(s, meeting.id, 2)  # type: ignore[arg-type]
        assert (await votes.close_vote(s, vote, key))["counts"] == [1, 0, 2]
    async with db.session() as s:
        assert not (await s.exec(select(SealedBallot))).all()
        for n, code in codes.items():
            check = await votes.check_receipt(s, meeting.id, code, key)  # type: ignore[arg-type]
            assert check["counted"] and check["option"] == (2 if n == 1 else n % 3), check
        assert len((await s.exec(select(VoteBallot))).all()) == 6
    await db.close()


async def test_processes_starting_together_migrate_a_postgresql_database_once(
        postgres_url: str) -> None:
    """Two web processes of one deployment (hopso-web@PORT) start at the same moment on an
    empty database: one migrates, the other waits for it and finds nothing left to do."""
    url = Settings(data_dir=Path("."), database_url=postgres_url).sqlalchemy_url
    dbs = [Database(url) for _ in range(3)]
    try:
        await asyncio.gather(*(upgrade(db) for db in dbs))
        async with dbs[0].session() as s:
            versions = (await s.exec(text(  # type: ignore[call-overload]
                "SELECT version_num FROM alembic_version"))).all()
        heads = ScriptDirectory.from_config(alembic_config(url)).get_heads()
        assert sorted(v for (v,) in versions) == sorted(heads)
    finally:
        for db in dbs:
            await db.close()
