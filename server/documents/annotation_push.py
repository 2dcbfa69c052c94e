"""Pushing an accepted annotation op to those who may see it (docs/protocol.md (Documents)).

The author's connections get the op as they see it (`own: true`); the document's other
subscribers get it projected for their class — everyone (`meeting` annotations) or presenters
(plus `presenter` ones) — and nothing for ops they may not see.
"""

from __future__ import annotations

import socketio

from documents.annotation_ops import AnnotationLog
from documents.op_records import Actor, OpRecord
from rooms.db import Database
from server.core.realtime import user_room
from server.documents.annotation_store import project
from server.documents.wire import wire_event

GENERIC = Actor("", is_presenter=False)  # any subscriber who is neither author nor presenter
PRESENTER = Actor("", is_presenter=True)


def doc_room(document_id: int, presenters: bool) -> str:
    return f"document:{document_id}:{'p' if presenters else 'v'}"


async def push_op(sio: socketio.AsyncServer, db: Database, document_id: int, version: int,
                  current: AnnotationLog, record: OpRecord, author_id: int, author: Actor,
                  sid: str | None) -> None:
    """Send `record` to the document's rooms and the author's other connections (not `sid`)."""
    base = {"document_id": document_id, "version": version, "actor_id": record.actor_id}
    generic, presenter = [await project(db, document_id, version, current, record, actor)
                          for actor in (GENERIC, PRESENTER)]
    if generic is not None and generic == presenter:
        # The usual case (a `meeting` stroke): both classes see the same event, so it is
        # encoded once and sent to both rooms in one emit.
        await sio.emit("annotation:event",
                       {**base, "own": False, "event": wire_event(generic)},
                       to=[doc_room(document_id, False), doc_room(document_id, True)],
                       skip_sid=sid)
    else:
        for presenters, event in ((False, generic), (True, presenter)):
            if event is not None:
                await sio.emit("annotation:event",
                               {**base, "own": False, "event": wire_event(event)},
                               room=doc_room(document_id, presenters), skip_sid=sid)
    own = await project(db, document_id, version, current, record, author)
    if own is not None:
        await sio.emit("annotation:event", {**base, "own": True, "event": wire_event(own)},
                       room=user_room(author_id), skip_sid=sid)
