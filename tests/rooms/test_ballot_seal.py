"""Sealing secret ballots: what a sealed row shows (nothing), what opens it (only its own
vote's key, in its own row), and the key file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from rooms.ballot_seal import (
    SEALED_BYTES,
    BallotKey,
    BallotKeyError,
    BallotKeyMismatch,
    receipt_hash,
)

RECEIPT = "ABCD-EFGH-JKMN-PQRS"


def test_a_sealed_ballot_opens_only_under_its_vote_key_and_row() -> None:
    key = BallotKey.generate()
    seal = key.for_vote(7, key.key_id)
    lookup = seal.lookup(RECEIPT)
    assert lookup == seal.lookup(" abcd efgh-jkmn-pqrs ")  # as typed by a person
    assert lookup != key.for_vote(8, key.key_id).lookup(RECEIPT)  # another vote, another key
    assert lookup != receipt_hash(RECEIPT)  # unrelated to what is kept after close
    blobs = {seal.seal(lookup, option, receipt_hash(RECEIPT)) for option in (0, 1, 2, 2)}
    assert len(blobs) == 4 and {len(b) for b in blobs} == {SEALED_BYTES}  # fresh, same size
    blob = seal.seal(lookup, 2, receipt_hash(RECEIPT))
    opened = seal.unseal(lookup, blob)
    assert (opened.option, opened.receipt_hash) == (2, receipt_hash(RECEIPT))
    with pytest.raises(BallotKeyMismatch):
        seal.unseal(seal.lookup("ZZZZ-ZZZZ-ZZZZ-ZZZZ"), blob)  # moved to another row
    with pytest.raises(BallotKeyMismatch):
        key.for_vote(8, key.key_id).unseal(lookup, blob)  # moved to another vote
    with pytest.raises(BallotKeyMismatch):
        BallotKey.generate().for_vote(7, None).unseal(lookup, blob)  # another server's key
    with pytest.raises(BallotKeyMismatch):
        BallotKey.generate().for_vote(7, key.key_id)  # refused before trying


def test_the_key_file_is_created_once_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ballot.key"
    first = BallotKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = BallotKey.load_or_create(path)
    assert again.key_id == first.key_id
    seal = first.for_vote(1, first.key_id)
    blob = seal.seal(seal.lookup(RECEIPT), 1, receipt_hash(RECEIPT))
    assert again.for_vote(1, first.key_id).unseal(seal.lookup(RECEIPT), blob).option == 1
    path.write_text("not a key\n")
    with pytest.raises(BallotKeyError, match="hex digits"):
        BallotKey.load_or_create(path)
    path.write_text("ab" * 16 + "\n")  # 16 bytes, not 32
    with pytest.raises(BallotKeyError, match="hex digits"):
        BallotKey.load_or_create(path)
