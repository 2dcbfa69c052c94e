"""The minutes' review and signatures: draft → reviewed → signing → signed, per version.

A generated version (rooms.minutes.archive) is immutable. The meeting's secretary puts one
up for review (draft), its chair approves it (reviewed); then the secretary signs, and the
chair signs over the secretary's signed file (signed). Each signature is an incremental
update of the bytes before it (documents/signing.py), so the archived version, the
secretary's file and the chair's file are each a prefix of the next. Once a version is up
for review it never changes: a corrected record is a new version, which starts its own
review; only the newest version moves on, and an older one keeps what it has.

Who may do what is checked here on the caller's meeting role (not the global permission
table: a chair cannot draft, a secretary cannot approve), before anything is written.
"""

from __future__ import annotations

import enum
import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel, col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import audit
from rooms.errors import Conflict, Forbidden, Invalid, NotFound
from rooms.meetings import MeetingAccess
from rooms.minutes import get_pdf
from rooms.models import MeetingRole, User, enum_column, utcnow
from rooms.procedure_models import AuditEntry, MinutesVersion


class Stage(str, enum.Enum):
    draft = "draft"  # the secretary put it up for review
    reviewed = "reviewed"  # the chair approved it
    signing = "signing"  # the secretary signed it
    signed = "signed"  # the chair signed it too


class SignerRole(str, enum.Enum):
    secretary = "secretary"
    chair = "chair"


# The PDF signature field each role signs in, and the stage each signature needs first.
FIELD = {SignerRole.secretary: "ThuKy", SignerRole.chair: "ChuTri"}
NEEDS = {SignerRole.secretary: Stage.reviewed, SignerRole.chair: Stage.signing}
AFTER = {SignerRole.secretary: Stage.signing, SignerRole.chair: Stage.signed}


class MinutesReview(SQLModel, table=True):
    """Where one version of the minutes is in its review (no row: not submitted)."""

    __table_args__ = (UniqueConstraint("meeting_id", "version", name="uq_minutes_review"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    version: int
    stage: Stage = Field(sa_column=enum_column(Stage))
    drafted_by: int = Field(foreign_key="user.id")
    drafted_at: datetime = Field(default_factory=utcnow)
    reviewed_by: int | None = Field(default=None, foreign_key="user.id")
    reviewed_at: datetime | None = None


class MinutesSignature(SQLModel, table=True):
    """One signature, with the whole signed file it produced (the previous file + one
    incremental update)."""

    __table_args__ = (UniqueConstraint("meeting_id", "version", "role",
                                       name="uq_minutes_signature"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    version: int
    role: SignerRole = Field(sa_column=enum_column(SignerRole))
    user_id: int = Field(foreign_key="user.id")
    signer: str = Field(max_length=300)  # the certificate's subject
    certificate_sha256: str = Field(max_length=64)
    key_kind: str = Field(max_length=16)  # pkcs12 | pkcs11
    sha256: str = Field(max_length=64)
    size: int
    pdf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    audit_hash: str = Field(max_length=64)
    signed_at: datetime = Field(default_factory=utcnow)


def _role_of(access: MeetingAccess, wanted: MeetingRole, doing: str) -> None:
    if access.role != wanted:
        raise Forbidden(f"only the meeting's {wanted.value} may {doing} the minutes")


async def _latest(session: AsyncSession, meeting_id: int) -> int:
    rows = await session.exec(select(func.max(MinutesVersion.version))
                              .where(MinutesVersion.meeting_id == meeting_id))
    return int(rows.one() or 0)


async def _review(session: AsyncSession, meeting_id: int, version: int) -> MinutesReview | None:
    rows = await session.exec(select(MinutesReview).where(MinutesReview.meeting_id == meeting_id,
                                                          MinutesReview.version == version))
    return rows.first()


async def _newest_only(session: AsyncSession, meeting_id: int, version: int) -> None:
    latest = await _latest(session, meeting_id)
    if version > latest or version < 1:
        raise NotFound(f"minutes version {version} not found")
    if version != latest:
        raise Conflict(f"minutes version {version} was superseded by version {latest}",
                       code="superseded")


async def submit(session: AsyncSession, access: MeetingAccess, version: int) -> MinutesReview:
    """The secretary puts the newest version up for review."""
    _role_of(access, MeetingRole.secretary, "draft")
    meeting_id = access.meeting.id or 0
    await _newest_only(session, meeting_id, version)
    if await _review(session, meeting_id, version) is not None:
        raise Conflict(f"minutes version {version} is already under review", code="wrong_stage")
    row = MinutesReview(meeting_id=meeting_id, version=version, stage=Stage.draft,
                        drafted_by=access.user.id or 0)
    session.add(row)
    await audit.record(session, meeting_id, access.user.id, "minutes_drafted",
                       {"version": version})
    await session.flush()
    return row


async def approve(session: AsyncSession, access: MeetingAccess, version: int) -> MinutesReview:
    """The chair approves the draft."""
    _role_of(access, MeetingRole.chair, "approve")
    meeting_id = access.meeting.id or 0
    await _newest_only(session, meeting_id, version)
    row = await _review(session, meeting_id, version)
    if row is None or row.stage != Stage.draft:
        raise Conflict(f"minutes version {version} is not a draft awaiting review "
                       f"({row.stage.value if row else 'not submitted'})", code="wrong_stage")
    row.stage, row.reviewed_by, row.reviewed_at = Stage.reviewed, access.user.id, utcnow()
    session.add(row)
    await audit.record(session, meeting_id, access.user.id, "minutes_reviewed",
                       {"version": version})
    await session.flush()
    return row


def signer_role(access: MeetingAccess) -> SignerRole:
    if access.role == MeetingRole.secretary:
        return SignerRole.secretary
    if access.role == MeetingRole.chair:
        return SignerRole.chair
    raise Forbidden("only the meeting's secretary and chair sign the minutes")


async def to_sign(session: AsyncSession, access: MeetingAccess, version: int
                  ) -> tuple[SignerRole, bytes]:
    """What the caller signs now: the archived PDF (secretary) or the secretary's signed
    file (chair), checked against its sha256. Writes nothing."""
    role = signer_role(access)
    meeting_id = access.meeting.id or 0
    await _newest_only(session, meeting_id, version)
    row = await _review(session, meeting_id, version)
    stage = row.stage if row else None
    if stage != NEEDS[role]:
        wanted = "approved by the chair" if role is SignerRole.secretary \
            else "signed by the secretary"
        raise Conflict(f"minutes version {version} must be {wanted} first "
                       f"({stage.value if stage else 'not submitted'})", code="wrong_stage")
    if role is SignerRole.secretary:
        return role, (await get_pdf(session, meeting_id, version)).pdf
    previous = await signature(session, meeting_id, version, SignerRole.secretary)
    if previous is None or hashlib.sha256(previous.pdf).hexdigest() != previous.sha256:
        raise Invalid(f"the secretary's signed minutes version {version} are damaged",
                      code="corrupt")
    return role, previous.pdf


async def record_signature(session: AsyncSession, access: MeetingAccess, version: int,
                           signed_over: bytes, pdf: bytes, signer: str, certificate_sha256: str,
                           key_kind: str) -> MinutesSignature:
    """Keep a signature made over `signed_over`; refused if the review moved meanwhile."""
    role, expected = await to_sign(session, access, version)
    if expected != signed_over or not pdf.startswith(signed_over):
        raise Conflict("the minutes changed while they were being signed; sign again")
    meeting_id = access.meeting.id or 0
    digest = hashlib.sha256(pdf).hexdigest()
    entry = await audit.record(session, meeting_id, access.user.id, "minutes_signed",
                               {"version": version, "role": role.value, "signer": signer,
                                "certificate_sha256": certificate_sha256, "sha256": digest,
                                "key": key_kind})
    row = MinutesSignature(meeting_id=meeting_id, version=version, role=role,
                           user_id=access.user.id or 0, signer=signer[:300],
                           certificate_sha256=certificate_sha256, key_kind=key_kind,
                           sha256=digest, size=len(pdf), pdf=pdf,
                           audit_hash=entry.hash if entry else "")
    review = await _review(session, meeting_id, version)
    assert review is not None  # to_sign found it
    review.stage = AFTER[role]
    session.add_all([row, review])
    await session.flush()
    return row


async def signature(session: AsyncSession, meeting_id: int, version: int,
                    role: SignerRole) -> MinutesSignature | None:
    rows = await session.exec(select(MinutesSignature).where(
        MinutesSignature.meeting_id == meeting_id, MinutesSignature.version == version,
        MinutesSignature.role == role))
    return rows.first()


async def signed_file(session: AsyncSession, meeting_id: int, version: int) -> MinutesSignature:
    """The last signed file of a version (the chair's if there is one)."""
    for role in (SignerRole.chair, SignerRole.secretary):
        row = await signature(session, meeting_id, version, role)
        if row is not None:
            return row
    raise NotFound(f"minutes version {version} has not been signed")


async def status(session: AsyncSession, meeting_id: int, version: int) -> dict[str, Any]:
    """The review of one version and who signed it (no PDF bytes)."""
    latest = await _latest(session, meeting_id)
    if not 1 <= version <= latest:
        raise NotFound(f"minutes version {version} not found")
    review = await _review(session, meeting_id, version)
    rows = await session.exec(select(MinutesSignature.role, MinutesSignature.user_id,  # type: ignore[call-overload]
                                     MinutesSignature.signer, MinutesSignature.signed_at,
                                     MinutesSignature.sha256, MinutesSignature.key_kind,
                                     User.full_name)
                              .join(User, col(User.id) == col(MinutesSignature.user_id))
                              .where(col(MinutesSignature.meeting_id) == meeting_id,
                                     col(MinutesSignature.version) == version)
                              .order_by(col(MinutesSignature.id)))
    return {
        "version": version, "latest": latest,
        "stage": review.stage.value if review else None,
        "drafted_by": review.drafted_by if review else None,
        "drafted_at": review.drafted_at.isoformat() if review else None,
        "reviewed_by": review.reviewed_by if review else None,
        "reviewed_at": review.reviewed_at.isoformat() if review and review.reviewed_at else None,
        "signatures": [{"role": SignerRole(r).value, "field": FIELD[SignerRole(r)],
                        "user_id": u, "user_name": name, "signer": signer,
                        "signed_at": at.isoformat(), "sha256": sha, "key": kind}
                       for r, u, signer, at, sha, kind, name in rows.all()],
    }


SIGNED_KINDS = ("minutes_signed", "vote_result_signed")


async def audited_signatures(session: AsyncSession, meeting_id: int, sha256: str
                             ) -> list[dict[str, Any]]:
    """The audit entries of this meeting that recorded a signed file with this sha256."""
    rows = await session.exec(select(AuditEntry).where(
        AuditEntry.meeting_id == meeting_id, col(AuditEntry.kind).in_(SIGNED_KINDS),
        col(AuditEntry.data_json).contains(sha256)))
    out = []
    for entry in rows.all():
        data = audit.entry_dict(entry)
        if data["data"].get("sha256") == sha256:
            out.append({"seq": entry.seq, "kind": entry.kind, "at": data["at"],
                        "data": data["data"]})
    return out
