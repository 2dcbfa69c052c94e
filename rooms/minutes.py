"""Minutes (biên bản): gather a meeting's record for documents.minutes, archive the PDFs.

Rendering is CPU work done outside any transaction (the server runs it in a thread);
gathering and archiving are the two short database steps around it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import (
    agenda,
    attendance,
    audit,
    floor,
    recording_log,
    remote_attendance,
    remote_votes,
    votes,
)
from rooms.errors import Invalid, NotFound
from rooms.minutes_data import (
    AgendaEntry,
    Attendee,
    MinutesData,
    RecordedSpan,
    Speaker,
    VoteBaseKind,
    VoteMethod,
    VoteOption,
    VoteResult,
)
from rooms.models import Meeting, MeetingMember, MeetingRole, Site, Unit, User, utcnow
from rooms.procedure import read_state
from rooms.procedure_models import MinutesVersion, ProcedureState, VoteKind, VoteStatus

VIETNAM = timezone(timedelta(hours=7), "ICT")
MAX_CONCLUSIONS = 20_000
_SITE_PREFIX = "Điểm cầu "
_PLACE_PREFIXES = ("Thành phố ", "Thị xã ", "Tỉnh ", "Huyện ", "Quận ", "Phường ", "Xã ",
                   "Thị trấn ")


def place_name(unit_name: str) -> str:
    """'Thành phố Đồng Hới' → 'Đồng Hới' for the date line."""
    for prefix in _PLACE_PREFIXES:
        if unit_name.startswith(prefix):
            return unit_name[len(prefix):]
    return unit_name


def local(moment: datetime) -> datetime:
    return moment.astimezone(VIETNAM)


async def set_conclusions(session: AsyncSession, state: ProcedureState, text: str) -> None:
    text = text.replace("\r\n", "\n").strip()
    if len(text) > MAX_CONCLUSIONS:
        raise Invalid(f"conclusions must be at most {MAX_CONCLUSIONS} characters")
    state.conclusions = text
    session.add(state)


async def _person(session: AsyncSession, meeting_id: int, role: MeetingRole) -> Attendee:
    rows = await session.exec(select(User).join(MeetingMember,
                                                col(MeetingMember.user_id) == col(User.id))
                              .where(MeetingMember.meeting_id == meeting_id,
                                     MeetingMember.role == role).order_by(col(MeetingMember.id)))
    user = rows.first()
    return Attendee(name=user.full_name if user else "")


async def _attendees(session: AsyncSession, meeting_id: int) -> list[Attendee]:
    state = await read_state(session, meeting_id)
    view = await attendance.attendance_view(session, state)
    out = []
    for p in view["people"]:
        if p["role"] != MeetingRole.delegate.value:
            continue
        present = p["status"] in {s.value for s in attendance.PRESENT}
        site = (p["site"] or "").removeprefix(_SITE_PREFIX)  # the layout writes "điểm cầu …"
        out.append(Attendee(name=p["name"], present=present, site=site,
                            absence_reason=p["reason"] if not present else ""))
    for node, p in await remote_attendance.people(session, meeting_id):  # cascade nodes
        present = p["status"] in {s.value for s in attendance.PRESENT}
        site = (p["site"] or "").removeprefix(_SITE_PREFIX) or node
        out.append(Attendee(name=p["name"], present=present, site=site,
                            absence_reason=p["reason"] if not present else ""))
    return out


async def _sites(session: AsyncSession, meeting_id: int) -> list[str]:
    answers = await attendance.site_rows(session, meeting_id)
    out = []
    for site in await attendance.invited_sites(session, meeting_id):
        a = answers.get(site.id)  # type: ignore[arg-type]
        if a is not None and a.answered_by is not None:
            out.append(f"{site.name} ({a.headcount} người)" if a.present else f"{site.name} (vắng)")
        else:
            out.append(site.name)
    return out


async def _agenda(session: AsyncSession, state: ProcedureState) -> list[AgendaEntry]:
    view = await agenda.agenda_view(session, state)
    speeches = await floor.speeches_by_item(session, state.meeting_id)
    return [AgendaEntry(title=i["title"], presenter=i["presenter"],
                        duration_seconds=i["spent_seconds"] if i["started"] else None,
                        speakers=[Speaker(name=n, seconds=s) for n, s in speeches.get(i["id"], [])])
            for i in view["items"]]


async def _votes(session: AsyncSession, meeting_id: int) -> list[VoteResult]:
    out = []
    for vote in await votes.votes_of(session, meeting_id):
        if vote.status != VoteStatus.closed:
            continue
        result = await votes.tally(session, vote)
        totals: list[int] = result["totals"]
        labels = votes.option_labels_vi(vote)
        # A member checked out after voting could leave more ballots than the present base.
        eligible = max(int(result["eligible"]), sum(totals), 1)
        members = result.get("members")  # None: closed before the base was recorded
        out.append(VoteResult(
            question=vote.question, method=VoteMethod.SECRET if vote.secret else VoteMethod.OPEN,
            options=[VoteOption(label, n) for label, n in zip(labels, totals)],
            eligible=eligible, adopted=bool(result["adopted"]),
            base_kind=VoteBaseKind(result.get("base_rule", VoteBaseKind.ALL_MEMBERS.value)),
            members=int(members) if members is not None else None,
            present=result.get("present"), cast=result.get("cast"),
            election=vote.kind == VoteKind.election,
            elected=[labels[i] for i in result.get("elected", []) if 0 <= i < len(labels)],
            tie_break=bool(result.get("tie_break", False)),
            # read now, not from the frozen result: late ballots arrive after the close
            nodes_note=nodes_note([remote_votes.node_dict(r, vote.secret)
                                   for r in await remote_votes.rows_of(session, vote.id or 0)])))
    return out


def nodes_note(nodes: list[dict[str, Any]]) -> str:
    """A cascaded vote's ballots per node, and those that arrived after its close."""
    if not nodes:
        return ""
    text = "Trong đó tại các điểm cầu cấp dưới: " + "; ".join(
        f"{n['node']}: {n['cast']} phiếu" for n in nodes) + "."
    late = [n for n in nodes if n.get("late")]
    if late:
        text += " Phiếu đến sau khi kết thúc biểu quyết, không được tính: " + "; ".join(
            f"{n['node']}: {n['late']} phiếu" for n in late) + "."
    return text


async def gather(session: AsyncSession, meeting_id: int, version: int) -> MinutesData:
    """Everything the minutes show, read in one go."""
    meeting = await session.get(Meeting, meeting_id)
    if meeting is None:
        raise NotFound(f"meeting {meeting_id} not found")
    host = await session.get(Unit, meeting.unit_id)
    parent = await session.get(Unit, host.parent_id) if host and host.parent_id else None
    site_rows = await session.exec(select(Site).where(Site.unit_id == meeting.unit_id))
    host_site = site_rows.first()
    state = await read_state(session, meeting_id)
    host_name = host.name if host else ""
    now = local(utcnow())
    return MinutesData(
        issuing_body=parent.name if parent else "", unit=host_name,
        number=f"{version:02d}/BB-HS{meeting_id}", place_name=place_name(host_name),
        issued_on=now.date(), meeting_title=meeting.title,
        started_at=local(meeting.opened_at or meeting.starts_at),
        ended_at=local(meeting.closed_at) if meeting.closed_at else None,
        location=host_site.name if host_site else host_name,
        chair=await _person(session, meeting_id, MeetingRole.chair),
        secretary=await _person(session, meeting_id, MeetingRole.secretary),
        attendees=await _attendees(session, meeting_id), sites=await _sites(session, meeting_id),
        agenda=await _agenda(session, state), votes=await _votes(session, meeting_id),
        conclusions=state.conclusions, recorded=await _recorded(session, meeting_id))


async def _recorded(session: AsyncSession, meeting_id: int) -> list[RecordedSpan]:
    return [RecordedSpan(local(r.started_at), local(r.stopped_at) if r.stopped_at else None)
            for r in await recording_log.recordings(session, meeting_id)]


async def next_version(session: AsyncSession, meeting_id: int) -> int:
    rows = await session.exec(select(func.max(MinutesVersion.version))
                              .where(MinutesVersion.meeting_id == meeting_id))
    return int(rows.one() or 0) + 1


async def archive(session: AsyncSession, meeting_id: int, by: User, pdf: bytes) -> MinutesVersion:
    """Store a generated PDF as the next version. Call under the meeting lock."""
    version = await next_version(session, meeting_id)
    digest = hashlib.sha256(pdf).hexdigest()
    entry = await audit.record(session, meeting_id, by.id, audit.AuditKind.minutes_generated,
                               {"version": version, "sha256": digest, "size": len(pdf)})
    assert entry is not None, "minutes are archived outside audit buffers"
    row = MinutesVersion(meeting_id=meeting_id, version=version, sha256=digest, size=len(pdf),
                         pdf=pdf, audit_hash=entry.hash, created_by=by.id)  # type: ignore[arg-type]
    session.add(row)
    await session.flush()
    return row


def version_dict(row: MinutesVersion) -> dict[str, Any]:
    return {"version": row.version, "sha256": row.sha256, "size": row.size,
            "audit_hash": row.audit_hash, "created_by": row.created_by,
            "created_at": row.created_at.isoformat(),
            "url": f"/api/meetings/{row.meeting_id}/minutes/{row.version}.pdf"}


async def versions(session: AsyncSession, meeting_id: int) -> list[dict[str, Any]]:
    # Every column but the PDF bytes.
    rows = await session.exec(sa_select(MinutesVersion.version, MinutesVersion.sha256,  # type: ignore[call-overload]
                                        MinutesVersion.size, MinutesVersion.audit_hash,
                                        MinutesVersion.created_by, MinutesVersion.created_at)
                              .where(col(MinutesVersion.meeting_id) == meeting_id)
                              .order_by(col(MinutesVersion.version)))
    return [{"version": v, "sha256": sha, "size": size, "audit_hash": ah, "created_by": by,
             "created_at": at.isoformat(), "url": f"/api/meetings/{meeting_id}/minutes/{v}.pdf"}
            for v, sha, size, ah, by, at in rows.all()]


async def get_pdf(session: AsyncSession, meeting_id: int, version: int | None) -> MinutesVersion:
    """A stored version (None: the latest); its bytes are checked against their sha256."""
    q = select(MinutesVersion).where(MinutesVersion.meeting_id == meeting_id)
    q = q.where(MinutesVersion.version == version) if version is not None else \
        q.order_by(col(MinutesVersion.version).desc())
    row = (await session.exec(q.limit(1))).first()
    if row is None:
        raise NotFound("no minutes have been generated for this meeting yet"
                       if version is None else f"minutes version {version} not found")
    if hashlib.sha256(row.pdf).hexdigest() != row.sha256:
        raise Invalid(f"minutes version {row.version} does not match its sha256",
                      code="corrupt")
    return row

