"""Attacks on secret ballots from the raw database files (tests/server/sqlite_file.py): each
tries to tell which voter chose which option, from what the bytes say, and is scored against
the truth. Written against what the format lets anyone see, not against our schema's names:
a ballot is any small record holding a receipt-like hash (64 hex digits), the vote's id and
then one other small number (the option)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from tests.server.sqlite_file import Cell, DatabaseFiles, Page

HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Ballot:
    page: int
    offset: int
    receipt: str
    option: int


def ballot_of(cell: Cell, vote_id: int, options: int) -> Ballot | None:
    values = cell.values
    if not 3 <= len(values) <= 4:
        return None
    hashes = [v for v in values if isinstance(v, str) and HASH.fullmatch(v)]
    ints = [v for v in values if isinstance(v, int)]
    if len(hashes) != 1 or len(ints) != 2 or ints[0] != vote_id:  # the vote, then the option
        return None
    if not 0 <= ints[1] < options:
        return None
    return Ballot(cell.page, cell.offset, hashes[0], ints[1])


def ballots(pages: Iterable[Page], vote_id: int, options: int) -> list[Ballot]:
    return [b for p in pages for c in p.cells if (b := ballot_of(c, vote_id, options))]


def participations(pages: Iterable[Page], vote_id: int, voters: set[int]) -> dict[int, int]:
    """user id -> rowid of the row saying they voted (rowids grow in insertion order)."""
    found = {}
    for p in pages:
        for c in p.cells:
            v = c.values
            if c.rowid is not None and len(v) == 5 and v[1] == vote_id and v[2] in voters \
                    and v[3] is None:
                found[v[2]] = c.rowid
    return found


def audited_casts(pages: Iterable[Page], vote_id: int, voters: set[int]) -> dict[int, int]:
    """user id -> audit seq of their first `ballot_cast` entry for the vote."""
    found: dict[int, int] = {}
    for p in pages:
        for c in p.cells:
            v = c.values
            if "ballot_cast" in v and f'"vote_id":{vote_id}' in str(v[v.index("ballot_cast") + 1]):
                actor, seq = v[v.index("ballot_cast") - 1], v[2]
                if actor in voters and isinstance(seq, int):
                    found[actor] = min(seq, found.get(actor, seq))
    return found


def physical_order(found: list[Ballot]) -> list[Ballot]:
    """The order cells were written in: page by page, each page's content growing down."""
    return sorted(found, key=lambda b: (b.page, -b.offset))


def pair(voters_in_order: list[int], ballots_in_order: list[Ballot]) -> dict[int, int]:
    return {u: b.option for u, b in zip(voters_in_order, ballots_in_order)}


def by_commit(files: DatabaseFiles, vote_id: int, options: int, voters: set[int]
              ) -> dict[int, int]:
    """The WAL's history: a ballot and a participation first seen in the same transaction
    belong together."""
    first_ballot: dict[str, int] = {}
    first_vote: dict[int, int] = {}
    for n, commit in enumerate(files.commits()):
        for b in ballots(commit, vote_id, options):
            first_ballot.setdefault(b.receipt, n)
        for user in participations(commit, vote_id, voters):
            first_vote.setdefault(user, n)
    final = {b.receipt: b.option for b in ballots(files.pages(), vote_id, options)}
    guesses: dict[int, int] = {}
    for user, n in first_vote.items():
        same = [h for h, m in first_ballot.items() if m == n and h in final]
        if len(same) == 1:
            guesses[user] = final[same[0]]
    return guesses


def attacks(files: DatabaseFiles, vote_id: int, options: int, voters: set[int]
            ) -> dict[str, dict[int, int]]:
    """Each attack's guess: user id -> option."""
    pages = files.pages()
    found = physical_order(ballots(pages, vote_id, options))
    joined = participations(pages, vote_id, voters)
    audited = audited_casts(pages, vote_id, voters)
    return {
        "page order x participation ids": pair(sorted(joined, key=joined.__getitem__), found),
        "page order x audit order": pair(sorted(audited, key=audited.__getitem__), found),
        "WAL transactions": by_commit(files, vote_id, options, voters),
    }


def score(guess: dict[int, int], truth: dict[int, int]) -> int:
    return sum(1 for user, option in guess.items() if truth.get(user) == option)


def residue(files: DatabaseFiles, needles: Iterable[bytes]) -> list[str]:
    """Where the given byte strings survive outside live cells: free space of pages,
    freelist pages, and any WAL frame."""
    places = []
    free = files.freelist()
    for page in files.pages():
        space = page.data if page.number in free else page.free_bytes()
        places += [f"page {page.number}" for n in needles if n in space]
    places += ["WAL" for n in needles if n in files.wal]
    return places
