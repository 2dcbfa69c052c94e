"""Floor requests (đăng ký phát biểu): the queue, the floor holder, speaking time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case
from sqlalchemy import select as sa_select
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import attendance, remote_floor
from rooms.errors import Conflict, Forbidden, Invalid, NotFound
from rooms.models import MeetingRole, Site, User, utcnow
from rooms.procedure import RateLimited, seconds_between
from rooms.procedure_models import AgendaItem, FloorRequest, FloorStatus, ProcedureState

RATE_LIMIT = 5  # requests per person per window
RATE_WINDOW = timedelta(seconds=60)
MAX_LIMIT_SECONDS = 3600
WAITING = (FloorStatus.queued, FloorStatus.speaking)
Names = tuple[dict[int, str], dict[int, str], dict[int, str]]  # people, sites, items


async def get_request(session: AsyncSession, meeting_id: int, request_id: int) -> FloorRequest:
    request = await session.get(FloorRequest, request_id)
    if request is None or request.meeting_id != meeting_id:
        raise NotFound(f"floor request {request_id} not found in this meeting")
    return request


async def request_floor(session: AsyncSession, state: ProcedureState, user: User,
                        role: MeetingRole, for_site: bool,
                        now: datetime | None = None) -> FloorRequest:
    """Ask to speak on the current item, as oneself or (a site operator) for one's site."""
    now = now or utcnow()
    meeting_id = state.meeting_id
    if for_site:
        if role != MeetingRole.site_operator or user.site_id is None:
            raise Forbidden("only a site operator asks for the floor on behalf of a site")
        site_id: int | None = (await attendance.require_invited_site(
            session, meeting_id, user.site_id)).id
    else:
        record = await attendance.status_of(session, meeting_id, user.id)  # type: ignore[arg-type]
        if record is None or record.status not in attendance.PRESENT:
            raise Conflict("check in before asking for the floor", code="not_checked_in")
        site_id = record.site_id
    # The rate limit and "already asked" in one read of the person's requests (two before).
    counted = await session.exec(select(  # type: ignore[call-overload]
        func.count(case((col(FloorRequest.requested_at) >= now - RATE_WINDOW, 1))),
        func.count(case((col(FloorRequest.status).in_(list(WAITING))
                         & (col(FloorRequest.for_site) == for_site), 1))))
        .where(FloorRequest.meeting_id == meeting_id, FloorRequest.user_id == user.id))
    recent, waiting = counted.one()
    if recent >= RATE_LIMIT:
        raise RateLimited(f"at most {RATE_LIMIT} floor requests a minute; wait a moment")
    if waiting:
        raise Conflict("you are already in the queue or speaking", code="already_requested")
    request = FloorRequest(meeting_id=meeting_id, agenda_item_id=state.current_item_id,
                           user_id=user.id,  # type: ignore[arg-type]
                           site_id=site_id, for_site=for_site, status=FloorStatus.queued,
                           requested_at=now)
    session.add(request)
    await session.flush()
    return request


def _transition(request: FloorRequest, allowed: tuple[FloorStatus, ...], to: FloorStatus) -> None:
    if request.status not in allowed:
        raise Conflict(f"floor request {request.id} is {request.status.value}; it cannot become "
                       f"{to.value}", code="bad_state")
    request.status = to


async def withdraw(session: AsyncSession, state: ProcedureState, user: User,
                   request_id: int) -> FloorRequest:
    request = await get_request(session, state.meeting_id, request_id)
    if request.user_id != user.id:
        raise Forbidden("only the person who asked can withdraw a floor request")
    _transition(request, (FloorStatus.queued,), FloorStatus.withdrawn)
    session.add(request)
    return request


async def end_floor(session: AsyncSession, state: ProcedureState,
                    now: datetime | None = None) -> FloorRequest:
    """The current speaker's turn ends; their speaking time is recorded."""
    now = now or utcnow()
    if state.floor_request_id is None:
        raise Conflict("nobody has the floor", code="no_floor")
    request = await get_request(session, state.meeting_id, state.floor_request_id)
    _transition(request, (FloorStatus.speaking,), FloorStatus.done)
    request.ended_at = now
    request.spoken_seconds = seconds_between(request.granted_at, now)
    state.floor_request_id = None
    session.add_all([request, state])
    return request


async def grant(session: AsyncSession, state: ProcedureState, request_id: int,
                limit_seconds: int | None = None, now: datetime | None = None
                ) -> tuple[FloorRequest, FloorRequest | None]:
    """Give the floor; whoever held it finishes. Returns (granted, ended or None)."""
    now = now or utcnow()
    if limit_seconds is not None and not 1 <= limit_seconds <= MAX_LIMIT_SECONDS:
        raise Invalid(f"limit_seconds must be 1 to {MAX_LIMIT_SECONDS}")
    request = await get_request(session, state.meeting_id, request_id)
    _transition(request, (FloorStatus.queued,), FloorStatus.speaking)
    ended = await end_floor(session, state, now) if state.floor_request_id is not None else None
    request.granted_at, request.limit_seconds = now, limit_seconds
    state.floor_request_id = request.id
    session.add_all([request, state])
    await session.flush()
    return request, ended


async def skip(session: AsyncSession, state: ProcedureState, request_id: int) -> FloorRequest:
    request = await get_request(session, state.meeting_id, request_id)
    _transition(request, (FloorStatus.queued,), FloorStatus.skipped)
    request.ended_at = utcnow()
    session.add(request)
    return request


async def _names(session: AsyncSession, requests: list[FloorRequest]) -> Names:
    """Names of the requests' people, sites and items: one query each, whatever the number
    of requests (a session's identity map holds rows weakly, so a get per row went to the
    database every time; this runs on every floor change at every cascade node)."""
    async def named(key: Any, label: Any, ids: set[int]) -> dict[int, str]:
        if not ids:
            return {}
        rows = await session.exec(select(key, label).where(col(key).in_(ids)))
        found = {int(i): str(n) for i, n in rows.all()}
        return {i: found.get(i, "?") for i in ids}
    users = await named(User.id, User.full_name, {r.user_id for r in requests})
    sites = await named(Site.id, Site.name, {r.site_id for r in requests
                                             if r.site_id is not None})
    items = await named(AgendaItem.id, AgendaItem.title, {r.agenda_item_id for r in requests
                                                          if r.agenda_item_id is not None})
    return users, sites, items


def _request_dict(r: FloorRequest, names: Names) -> dict[str, Any]:
    users, sites, items = names
    return {"id": r.id, "user_id": r.user_id, "name": users.get(r.user_id, "?"),
            "site_id": r.site_id, "site": sites.get(r.site_id) if r.site_id else None,
            "for_site": r.for_site, "agenda_item_id": r.agenda_item_id,
            "item": items.get(r.agenda_item_id) if r.agenda_item_id else None,
            "status": r.status.value, "requested_at": r.requested_at.isoformat(),
            "granted_at": r.granted_at.isoformat() if r.granted_at else None,
            "limit_seconds": r.limit_seconds}


# floor_view's statement, built once: at every cascade node on every floor change (the
# request's own path at a ward and at the owner), building it cost a good part of its
# round trip's CPU.
_VIEW = (sa_select(FloorRequest, col(User.full_name), col(Site.name), col(AgendaItem.title),
                   remote_floor.FloorOrigin)
         .outerjoin(User, col(User.id) == col(FloorRequest.user_id))
         .outerjoin(Site, col(Site.id) == col(FloorRequest.site_id))
         .outerjoin(AgendaItem, col(AgendaItem.id) == col(FloorRequest.agenda_item_id))
         .outerjoin(remote_floor.FloorOrigin,
                    col(remote_floor.FloorOrigin.request_id) == col(FloorRequest.id))
         .where(col(FloorRequest.meeting_id) == bindparam("meeting_id"),
                col(FloorRequest.status).in_([*WAITING, FloorStatus.done]))
         .order_by(col(FloorRequest.id)))


async def floor_view(session: AsyncSession, state: ProcedureState) -> dict[str, Any]:
    """The holder and the ordered queue (first asked, first listed), and the speaking totals.
    Pushed on every floor change at every cascade node: one read, the waiting and the
    finished requests joined with their people's, sites' and items' names and their origin
    marks (five before: the requests, then each table apart)."""
    found = await session.exec(_VIEW, params={"meeting_id": state.meeting_id})  # type: ignore[call-overload]
    requests: list[FloorRequest] = []
    names: Names = ({}, {}, {})
    marks: dict[int, remote_floor.FloorOrigin] = {}
    for r, person, site, item, origin in found.all():
        requests.append(r)
        name_row(names, r, person, site, item)
        if origin is not None and r.id is not None:
            marks[r.id] = origin
    return view_of(requests, names, marks, state.floor_request_id)


def name_row(names: Names, r: FloorRequest, person: str | None, site: str | None,
             item: str | None) -> None:
    """Adds a request's names, as read joined with it, to `names` ("?" for a row gone)."""
    users, sites, items = names
    users[r.user_id] = person or "?"
    if r.site_id is not None:
        sites[r.site_id] = site or "?"
    if r.agenda_item_id is not None:
        items[r.agenda_item_id] = item or "?"


def view_of(requests: list[FloorRequest], names: Names,
            marks: dict[int, remote_floor.FloorOrigin], holder_id: int | None
            ) -> dict[str, Any]:
    """`floor_view` from rows at hand (any statuses, in id order; `names` covers the
    waiting and finished ones' people, sites and items, `marks` the waiting ones of other
    nodes' people): a cascade mirror pushes what it has just applied without reading it
    back."""
    requests = [r for r in requests if r.status in WAITING or r.status == FloorStatus.done]
    waiting = [r for r in requests if r.status in WAITING]

    def shown(r: FloorRequest) -> dict[str, Any]:
        return {**_request_dict(r, names), **remote_floor.marks(marks.get(r.id or 0))}
    holder = next((r for r in waiting if r.id == holder_id), None)
    return {"holder": shown(holder) if holder else None,
            "queue": [shown(r) for r in waiting if r.status == FloorStatus.queued],
            "totals": _totals([r for r in requests if r.status == FloorStatus.done], names)}


def _totals(done: list[FloorRequest], names: Names) -> dict[str, list[dict[str, Any]]]:
    users, sites, _ = names
    per_user: dict[int, int] = {}
    per_site: dict[int, int] = {}
    for r in done:
        if not r.for_site:
            per_user[r.user_id] = per_user.get(r.user_id, 0) + r.spoken_seconds
        if r.site_id is not None:
            per_site[r.site_id] = per_site.get(r.site_id, 0) + r.spoken_seconds
    return {"people": [{"user_id": k, "name": users[k], "seconds": v} for k, v in per_user.items()],
            "sites": [{"site_id": k, "name": sites[k], "seconds": v} for k, v in per_site.items()]}


async def speeches_by_item(session: AsyncSession, meeting_id: int
                           ) -> dict[int | None, list[tuple[str, int]]]:
    """For the minutes: who spoke on each item and for how long, in order."""
    rows = await session.exec(select(FloorRequest).where(
        FloorRequest.meeting_id == meeting_id, FloorRequest.status == FloorStatus.done)
        .order_by(col(FloorRequest.granted_at)))
    done = list(rows.all())
    users, sites, _ = await _names(session, done)
    marks = await remote_floor.origins(session, [r.id for r in done if r.id is not None])
    out: dict[int | None, list[tuple[str, int]]] = {}
    for r in done:
        who = sites.get(r.site_id or 0, "?") if r.for_site else users.get(r.user_id, "?")
        if (mark := marks.get(r.id or 0)) is not None:  # a person of another cascade node
            who = f"{who} ({mark.site or mark.unit or mark.origin})"
        out.setdefault(r.agenda_item_id, []).append((who, r.spoken_seconds))
    return out
