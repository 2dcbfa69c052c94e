"""Who may do what: one plain table of meeting role → actions (Galène-style)."""

from __future__ import annotations

import enum

from rooms.models import MeetingRole, Role


class Action(str, enum.Enum):
    view = "view"  # see the meeting, its members, documents and state
    manage = "manage"  # open/close, edit details and members
    edit_agenda = "edit_agenda"
    upload_document = "upload_document"
    publish_media = "publish_media"
    chair_media = "chair_media"  # mute others, give the floor, remove people
    annotate = "annotate"
    present = "present"  # drive the shared page for followers
    request_floor = "request_floor"
    vote = "vote"
    run_procedure = "run_procedure"  # roll call, open/close votes
    record_attendance = "record_attendance"
    check_in = "check_in"  # mark oneself present (in person or online)


_ALL = frozenset(Action)
MEETING_PERMISSIONS: dict[MeetingRole, frozenset[Action]] = {
    MeetingRole.chair: _ALL - {Action.upload_document},
    MeetingRole.secretary: frozenset({
        Action.view, Action.manage, Action.edit_agenda, Action.upload_document,
        Action.publish_media, Action.annotate, Action.present, Action.record_attendance,
        Action.check_in,
    }),
    MeetingRole.delegate: frozenset({
        Action.view, Action.publish_media, Action.annotate, Action.request_floor, Action.vote,
        Action.check_in,
    }),
    MeetingRole.site_operator: frozenset({
        Action.view, Action.publish_media, Action.request_floor, Action.record_attendance,
    }),
    MeetingRole.observer: frozenset({Action.view, Action.annotate}),
}

# Global roles allowed to schedule meetings (the scheduler becomes the meeting's secretary).
CAN_CREATE_MEETINGS = frozenset({Role.admin, Role.secretary, Role.chair})


def allows(role: MeetingRole | None, action: Action) -> bool:
    return role is not None and action in MEETING_PERMISSIONS[role]
