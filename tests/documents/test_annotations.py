"""Annotation model and op log (ownership, privacy, idempotency, seq)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from documents.annotation_ops import AnnotationLog
from documents.annotations import (
    Annotation,
    AnnotationError,
    AnnotationLimits,
    ErrorCode,
    HighlighterShape,
    InkShape,
    NoteShape,
    Visibility,
    parse_annotation,
)
from documents.op_records import Actor, OpType

A4 = (595.0, 842.0)
DOC = "doc-1"
ALICE, BOB, CHAIR = Actor("alice"), Actor("bob"), Actor("chair", is_presenter=True)


def uid() -> str:
    return str(uuid.uuid4())


def ink(**data: Any) -> dict[str, Any]:
    base = {"points": [[10, 10, 0.5], [100, 120]], "color": "#FF0000", "width": 2}
    return {"id": uid(), "document_id": DOC, "page": 0, "author_id": "alice", "kind": "ink",
            "data": {**base, **data}}  # fmt: skip


def note(text: str = "Ý kiến: đồng ý với phương án") -> dict[str, Any]:
    return {"id": uid(), "document_id": DOC, "page": 0, "author_id": "alice", "kind": "note",
            "data": {"x": 50, "y": 60, "text": text}}  # fmt: skip


def add_op(ann: dict[str, Any], page: int = 0, **extra: Any) -> dict[str, Any]:
    return {"op_id": uid(), "type": "add", "page": page, "annotation": ann, **extra}


def code_of(exc: pytest.ExceptionInfo[AnnotationError]) -> ErrorCode:
    return exc.value.code


# --- parsing ---------------------------------------------------------------


def test_parse_ink_normalises_and_round_trips() -> None:
    ann = parse_annotation(ink(), A4)
    assert isinstance(ann.shape, InkShape)
    assert ann.shape.color == "#ff0000" and ann.shape.points[0].pressure == 0.5
    assert ann.visibility is Visibility.PRIVATE
    again = Annotation.from_dict(json.loads(json.dumps(ann.to_dict())))
    assert again == ann


def test_parse_highlighter_and_note() -> None:
    raw = ink()
    raw["kind"] = "highlighter"
    raw["data"] = {"rects": [[200, 30, 100, 10]]}
    hl = parse_annotation(raw, A4)
    assert isinstance(hl.shape, HighlighterShape)
    assert hl.shape.rects[0].to_list() == [100, 10, 200, 30]  # normalised
    assert hl.shape.opacity == pytest.approx(0.35)
    n = parse_annotation(note(), A4)
    assert isinstance(n.shape, NoteShape) and n.shape.text.startswith("Ý kiến")


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda r: r["data"].update(points=[[1, 1]] * 5001), ErrorCode.TOO_MANY_POINTS),
        (lambda r: r["data"].update(points=[]), ErrorCode.TOO_FEW_POINTS),
        (lambda r: r["data"].update(points=[[600, 10]]), ErrorCode.OUT_OF_PAGE),
        (lambda r: r["data"].update(points=[[-5, 10]]), ErrorCode.OUT_OF_PAGE),
        (lambda r: r["data"].update(points=[[float("nan"), 10]]), ErrorCode.BAD_NUMBER),
        (lambda r: r["data"].update(points=[[True, 10]]), ErrorCode.BAD_NUMBER),
        (lambda r: r["data"].update(points=[[1, 1, 2.0]]), ErrorCode.BAD_PRESSURE),
        (lambda r: r["data"].update(color="red"), ErrorCode.BAD_COLOR),
        (lambda r: r["data"].update(color="#12345"), ErrorCode.BAD_COLOR),
        (lambda r: r["data"].update(width=0), ErrorCode.BAD_WIDTH),
        (lambda r: r["data"].update(width=500), ErrorCode.BAD_WIDTH),
        (lambda r: r.update(id="not-a-uuid"), ErrorCode.BAD_ID),
        (lambda r: r.update(kind="circle"), ErrorCode.BAD_KIND),
        (lambda r: r.update(page=-1), ErrorCode.BAD_PAGE),
        (lambda r: r.update(visibility="public"), ErrorCode.BAD_VISIBILITY),
        (lambda r: r.pop("data"), ErrorCode.MISSING_FIELD),
    ],
)
def test_parse_rejects_absurd_input(mutate: Any, code: ErrorCode) -> None:
    raw = ink()
    mutate(raw)
    with pytest.raises(AnnotationError) as exc:
        parse_annotation(raw, A4)
    assert code_of(exc) is code
    assert exc.value.to_dict()["code"] == code.value


def test_small_overshoot_is_tolerated() -> None:
    parse_annotation(ink(points=[[-1.5, 843.5]]), A4)


def test_note_text_limits() -> None:
    with pytest.raises(AnnotationError) as exc:
        parse_annotation(note("x" * 2001), A4)
    assert code_of(exc) is ErrorCode.TEXT_TOO_LONG
    with pytest.raises(AnnotationError) as exc:
        parse_annotation(note("   "), A4)
    assert code_of(exc) is ErrorCode.EMPTY_TEXT


def test_visible_to() -> None:
    ann = parse_annotation(ink(), A4)
    assert ann.visible_to("alice") and not ann.visible_to("bob") and not ann.visible_to("bob", True)
    pres = parse_annotation({**ink(), "visibility": "presenter"}, A4)
    assert pres.visible_to("bob", is_presenter=True) and not pres.visible_to("bob")
    assert parse_annotation({**ink(), "visibility": "meeting"}, A4).visible_to("bob")


# --- op log ------------------------------------------------------------------


def make_log(**kw: Any) -> AnnotationLog:
    ticks = iter(range(1000, 100000))
    return AnnotationLog(DOC, [A4, A4, (842.0, 595.0)], clock=lambda: float(next(ticks)), **kw)


def test_add_assigns_seq_and_server_fields() -> None:
    log = make_log()
    raw = ink()
    raw["author_id"] = "mallory"  # ignored: the server decides the author
    res = log.apply(add_op(raw), ALICE)
    assert not res.replayed and res.record.seq == 1 and res.record.type is OpType.ADD
    after = res.record.effects[0].after
    assert after is not None and after.author_id == "alice" and after.created_at == 1000.0
    assert log.apply(add_op(ink()), ALICE).record.seq == 2
    assert log.apply(add_op(ink(), page=1), ALICE).record.seq == 1  # per-page sequence


def test_replay_is_idempotent() -> None:
    log = make_log()
    op = add_op(ink())
    first = log.apply(op, ALICE)
    again = log.apply(op, ALICE)
    assert again.replayed and again.record == first.record
    assert len(log.page_state(0).annotations) == 1 and log.page_state(0).seq == 1
    with pytest.raises(AnnotationError) as exc:
        log.apply(op, BOB)
    assert code_of(exc) is ErrorCode.OP_ID_CONFLICT


def test_ownership_enforced() -> None:
    log = make_log()
    raw = ink()
    log.apply(add_op(raw), ALICE)
    for op in (
        {"op_id": uid(), "type": "delete", "page": 0, "ids": [raw["id"]]},
        {"op_id": uid(), "type": "update", "page": 0, "annotation": raw},
        {
            "op_id": uid(),
            "type": "set_visibility",
            "page": 0,
            "ids": [raw["id"]],
            "visibility": "meeting",
        },
    ):
        with pytest.raises(AnnotationError) as exc:
            log.apply(op, BOB)
        assert code_of(exc) is ErrorCode.NOT_OWNER
    with pytest.raises(AnnotationError) as exc:
        log.apply(add_op(raw), BOB)  # stealing the id
    assert code_of(exc) is ErrorCode.ALREADY_EXISTS
    assert log.page_state(0).seq == 1  # rejected ops consume no seq


def test_update_keeps_created_and_kind() -> None:
    log = make_log()
    raw = ink()
    log.apply(add_op(raw), ALICE)
    changed = {**raw, "data": {**raw["data"], "color": "#00ff00"}}
    res = log.apply({"op_id": uid(), "type": "update", "page": 0, "annotation": changed}, ALICE)
    eff = res.record.effects[0]
    assert eff.before is not None and eff.after is not None
    assert eff.after.shape.color == "#00ff00" and eff.after.created_at == eff.before.created_at
    as_note = {**note(), "id": raw["id"]}
    with pytest.raises(AnnotationError) as exc:
        log.apply({"op_id": uid(), "type": "update", "page": 0, "annotation": as_note}, ALICE)
    assert code_of(exc) is ErrorCode.KIND_CHANGED


def test_erase_undo_redo_as_ordinary_ops() -> None:
    log = make_log()
    raw = ink()
    log.apply(add_op(raw), ALICE)
    erase = {"op_id": uid(), "type": "delete", "page": 0, "ids": [raw["id"]]}
    log.apply(erase, ALICE)
    assert raw["id"] not in log.page_state(0).annotations
    # Erasing again (eraser crossing an erased stroke) is a harmless no-op.
    assert log.apply({**erase, "op_id": uid()}, ALICE).record.effects == ()
    log.apply(add_op(raw), ALICE)  # undo the erase: same id comes back
    assert raw["id"] in log.page_state(0).annotations
    log.apply({**erase, "op_id": uid()}, ALICE)  # redo the erase
    assert raw["id"] not in log.page_state(0).annotations
    with pytest.raises(AnnotationError) as exc:
        log.apply(add_op(raw), BOB)  # only the author may resurrect it
    assert code_of(exc) is ErrorCode.NOT_OWNER


def test_delete_unknown_is_rejected_atomically() -> None:
    log = make_log()
    raw = ink()
    log.apply(add_op(raw), ALICE)
    with pytest.raises(AnnotationError) as exc:
        log.apply({"op_id": uid(), "type": "delete", "page": 0, "ids": [raw["id"], uid()]}, ALICE)
    assert code_of(exc) is ErrorCode.NOT_FOUND
    assert raw["id"] in log.page_state(0).annotations


def test_per_author_limit() -> None:
    log = make_log(limits=AnnotationLimits(max_per_page_per_author=2))
    log.apply(add_op(ink()), ALICE)
    log.apply(add_op(ink()), ALICE)
    with pytest.raises(AnnotationError) as exc:
        log.apply(add_op(ink()), ALICE)
    assert code_of(exc) is ErrorCode.TOO_MANY_ANNOTATIONS
    log.apply(add_op(ink()), BOB)  # the limit is per author


def test_out_of_page_against_actual_page_size() -> None:
    log = make_log()
    with pytest.raises(AnnotationError) as exc:
        log.apply(add_op(ink(points=[[700, 100]])), ALICE)
    assert code_of(exc) is ErrorCode.OUT_OF_PAGE
    log.apply(add_op(ink(points=[[700, 100]]), page=2), ALICE)  # landscape page


def test_private_ops_are_invisible_and_prev_seq_chains() -> None:
    log = make_log()
    shared = {**ink(), "visibility": "meeting"}
    private = ink()
    r1 = log.apply(add_op(shared), ALICE).record
    r2 = log.apply(add_op(private), ALICE).record
    r3 = log.apply(add_op({**note(), "visibility": "meeting"}), ALICE).record
    assert log.project(r2, BOB) is None  # not even the fact it happened
    e1, e3 = log.project(r1, BOB), log.project(r3, BOB)
    assert e1 is not None and e3 is not None
    assert (e1.prev_seq, e3.prev_seq) == (0, 1)  # seq 2 skipped without a "gap"
    own = log.project(r3, ALICE)
    assert own is not None and own.prev_seq == 2
    assert [e.seq for e in log.events_since(0, 0, BOB)] == [1, 3]
    assert [e.seq for e in log.events_since(0, 1, ALICE)] == [2, 3]
    anns, head = log.snapshot(0, BOB)
    assert {a.id for a in anns} == {shared["id"], r3.effects[0].annotation_id} and head == 3
    assert json.loads(json.dumps(e3.to_dict()))["upserts"][0]["kind"] == "note"


def test_sharing_and_unsharing_reach_other_viewers() -> None:
    log = make_log()
    a, b = ink(), ink()
    log.apply(add_op(a), ALICE)
    log.apply(add_op(b), ALICE)
    share = log.apply(
        {"op_id": uid(), "type": "set_visibility", "page": 0, "visibility": "meeting"}, ALICE
    )
    ev = log.project(share.record, BOB)
    assert ev is not None and {x.id for x in ev.upserts} == {
        a["id"],
        b["id"],
    }  # bulk per-page share
    unshare = log.apply(
        {
            "op_id": uid(),
            "type": "set_visibility",
            "page": 0,
            "ids": [a["id"]],
            "visibility": "presenter",
        },
        ALICE,
    )
    ev_bob, ev_chair = log.project(unshare.record, BOB), log.project(unshare.record, CHAIR)
    assert ev_bob is not None and ev_bob.removed == (a["id"],) and not ev_bob.upserts
    # The chair still sees it, and gets the new visibility value.
    assert ev_chair is not None and ev_chair.upserts[0].visibility is Visibility.PRESENTER
    assert a["id"] in {x.id for x in log.snapshot(0, CHAIR)[0]}


def test_bad_ops_rejected() -> None:
    log = make_log()
    cases = [
        ({"type": "add", "page": 0}, ErrorCode.BAD_ID),
        ({"op_id": uid(), "type": "paint", "page": 0}, ErrorCode.BAD_OP),
        ({"op_id": uid(), "type": "add", "page": 9, "annotation": ink()}, ErrorCode.BAD_PAGE),
        ({"op_id": uid(), "type": "delete", "page": 0, "ids": []}, ErrorCode.BAD_OP),
        ({"op_id": uid(), "type": "add", "page": 0, "annotation": "x"}, ErrorCode.BAD_OP),
    ]
    for op, code in cases:
        with pytest.raises(AnnotationError) as exc:
            log.apply(op, ALICE)
        assert code_of(exc) is code


def test_log_round_trips_through_json() -> None:
    log = make_log()
    op = add_op(ink())
    log.apply(op, ALICE)
    log.apply(add_op({**note(), "visibility": "meeting"}, page=1), BOB)
    restored = AnnotationLog.from_dict(json.loads(json.dumps(log.to_dict())))
    assert restored.to_dict() == log.to_dict()
    assert restored.apply(op, ALICE).replayed  # op_id index survives persistence
    assert len(restored.all_annotations()) == 2
