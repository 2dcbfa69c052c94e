"""Sealing secret ballots: what a sealed row shows (nothing), what opens it (only its own
vote's key, in its own row), and the key file."""

from __future__ import annotations

import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
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


_DIE_WHILE_CREATING = """
import os, secrets, sys
from pathlib import Path
from rooms.ballot_seal import BallotKey
secrets.token_bytes = lambda n: os._exit(9)  # killed right before the key's bytes exist
BallotKey.load_or_create(Path(sys.argv[1]))
"""


def test_a_kill_while_creating_the_key_never_blocks_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "ballot.key"
    dead = subprocess.run([sys.executable, "-c", _DIE_WHILE_CREATING, str(path)],
                          cwd=Path(__file__).parents[2], check=False)
    assert dead.returncode == 9
    assert not path.exists()  # at most a temp file was left, never an empty key
    (tmp_path / ".ballot.key.0000000000000000.tmp").write_text("ab" * 7)  # a partial one too
    key = BallotKey.load_or_create(path)
    assert BallotKey.load_or_create(path).key_id == key.key_id
    assert len(path.read_text().strip()) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_racing_creators_all_get_the_one_key_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "ballot.key"
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: BallotKey.load_or_create(path).key_id, range(32)))
    assert ids == {BallotKey.load_or_create(path).key_id}
    assert [p.name for p in tmp_path.iterdir()] == ["ballot.key"]  # temp files removed


def test_an_empty_key_file_is_refused_with_how_to_fix_it(tmp_path: Path) -> None:
    path = tmp_path / "ballot.key"
    path.write_bytes(b"")  # left by an older version killed while creating it
    with pytest.raises(BallotKeyError, match=r"is empty: .* delete it"):
        BallotKey.load_or_create(path)
    assert path.read_bytes() == b""  # never overwritten: a key is replaced by hand only
