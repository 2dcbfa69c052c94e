"""Rebuild an AnnotationLog from stored op records, and make the records that carry a
document's annotations over to a new version.

The log itself (documents.annotation_ops) is pure and in memory; the server stores every
accepted OpRecord and, after a restart or a cache eviction, replays them here. Replaying does
not re-validate: the records were validated when they were accepted.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from documents.annotation_ops import AnnotationLog
from documents.annotations import DEFAULT_LIMITS, Annotation, AnnotationLimits, PageSize
from documents.op_records import Effect, OpRecord, OpType
from documents.op_window import DEFAULT_MAX_RECORDS
from documents.version_mapping import map_annotations_to_version

_CARRY_NAMESPACE = uuid.UUID("5b0c4f8e-4a57-4c55-9d63-9a1f2f0f0d15")


def replay(log: AnnotationLog, records: Iterable[OpRecord]) -> AnnotationLog:
    """Apply stored records (in seq order per page) to ``log``; returns it."""
    for record in records:
        state = log.page_state(record.page)
        if record.seq != state.seq + 1:
            raise ValueError(f"record seq {record.seq} on page {record.page} does not follow "
                             f"{state.seq}")
        state.seq = record.seq
        for eff in record.effects:
            if eff.after is None:
                state.annotations.pop(eff.annotation_id, None)
                state.tombstones[eff.annotation_id] = record.actor_id
            else:
                state.annotations[eff.annotation_id] = eff.after
                state.tombstones.pop(eff.annotation_id, None)
        log.append(state, record)  # keeps only the newest records in memory
    return log


def rebuild(document_id: str, page_sizes: Sequence[PageSize], raw_records: Iterable[Mapping[str, Any]],
            limits: AnnotationLimits = DEFAULT_LIMITS,
            max_records: int = DEFAULT_MAX_RECORDS) -> AnnotationLog:
    records = sorted((OpRecord.from_dict(dict(r)) for r in raw_records), key=lambda r: (r.page, r.seq))
    # Replay pages interleaved by time (each page still in seq order), so the records left in
    # memory are the newest of the document, not those of its last pages.
    by_page: dict[int, list[OpRecord]] = {}
    for record in records:
        by_page.setdefault(record.page, []).append(record)
    records = list(heapq.merge(*by_page.values(), key=lambda r: r.at))
    return replay(AnnotationLog(document_id, page_sizes, limits=limits, max_records=max_records),
                  records)


def carry_over(old: AnnotationLog, old_texts: Sequence[str], new_texts: Sequence[str],
               new_page_sizes: Sequence[PageSize], version: int, at: float) -> list[OpRecord]:
    """Records that add every live annotation of ``old`` to a new version's empty log.

    Annotations keep their ids and authors; those whose page could not be verified come back
    flagged (see map_annotations_to_version). Op ids are derived from the version and the
    annotation id, so they are new for the document yet stable.
    """
    mapped = map_annotations_to_version(old.all_annotations(), old_texts, new_texts,
                                        new_page_sizes=new_page_sizes)
    seqs: dict[int, int] = {}
    out: list[OpRecord] = []
    for ann in sorted(mapped, key=lambda a: (a.page, a.created_at, a.id)):
        seqs[ann.page] = seqs.get(ann.page, 0) + 1
        op_id = str(uuid.uuid5(_CARRY_NAMESPACE, f"{old.document_id}:{version}:{ann.id}"))
        out.append(OpRecord(seqs[ann.page], op_id, OpType.ADD, ann.page, ann.author_id, at,
                            (Effect(ann.id, None, ann),)))
    return out


def visible_annotations(log: AnnotationLog, user_id: str, is_presenter: bool) -> list[Annotation]:
    """What one viewer sees on every page (for the annotated export)."""
    return [a for a in log.all_annotations() if a.visible_to(user_id, is_presenter)]
