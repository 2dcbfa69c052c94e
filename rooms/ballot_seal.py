"""Sealing secret ballots while their vote is open (docs/security.md, "Secret ballots").

While a secret vote is open, each ballot is stored as a `SealedBallot`: AES-256-GCM over
(option, receipt hash) under a key derived for that vote from the server's ballot key, which
lives in a file outside the database. Whoever holds the database file alone (a copy, a
backup, its WAL, a PostgreSQL role) sees that *someone* cast a ballot in that transaction,
never which option; the row is found again (to change it, or to check a receipt) by
`lookup`, an HMAC of the receipt under the same key, so the stored lookup says nothing
either. At close the ballots are unsealed into `VoteBallot` rows, written in the order of
their receipt hashes, and the sealed rows are erased (rooms/votes.py).

The ballot key is 32 random bytes; its `key_id` (an HMAC of a constant, so it reveals
nothing of the key) is stored on each secret vote, so a process holding another key
refuses clearly instead of failing to unseal at close.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rooms.errors import DomainError

KEY_BYTES = 32
_NONCE_BYTES = 12
SEALED_BYTES = _NONCE_BYTES + 1 + 32 + 16  # nonce, option, receipt hash, GCM tag: one size


class BallotKeyMismatch(DomainError):
    """This process's ballot key is not the one the vote was opened with."""

    code, status = "ballot_key_mismatch", 503


class BallotKeyError(Exception):
    """The ballot key file is unusable (the message says how to fix it)."""


def normal_receipt(code: str) -> str:
    return "".join(code.split()).replace("-", "").upper()


def receipt_hash(code: str) -> str:
    """What is kept of a receipt after close: sha256, so a voter can check their ballot."""
    return hashlib.sha256(f"hopso-receipt:{normal_receipt(code)}".encode()).hexdigest()


@dataclass(frozen=True)
class Unsealed:
    option: int
    receipt_hash: str


class VoteSeal:
    """The keys of one vote: `lookup` finds a ballot by its receipt, `seal`/`unseal` hide
    its content."""

    def __init__(self, vote_id: int, enc_key: bytes, lookup_key: bytes) -> None:
        self._vote_id = vote_id
        self._aead = AESGCM(enc_key)
        self._lookup_key = lookup_key

    def lookup(self, receipt_code: str) -> str:
        return hmac.new(self._lookup_key, normal_receipt(receipt_code).encode(),
                        hashlib.sha256).hexdigest()

    def _aad(self, lookup: str) -> bytes:
        # Bound to its vote and row: a sealed ballot moved to another row or vote won't open.
        return f"hopso-ballot:{self._vote_id}:{lookup}".encode()

    def seal(self, lookup: str, option: int, receipt_hash_hex: str) -> bytes:
        if not 0 <= option < 256:
            raise ValueError("option out of range")
        nonce = secrets.token_bytes(_NONCE_BYTES)
        plain = bytes([option]) + bytes.fromhex(receipt_hash_hex)
        return nonce + self._aead.encrypt(nonce, plain, self._aad(lookup))

    def unseal(self, lookup: str, sealed: bytes) -> Unsealed:
        try:
            plain = self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:],
                                       self._aad(lookup))
        except InvalidTag:
            raise BallotKeyMismatch("a sealed ballot does not open with this server's ballot "
                                    "key; nothing was changed") from None
        return Unsealed(plain[0], plain[1:].hex())


class BallotKey:
    """The server's ballot key (one per deployment: every process must hold the same)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_BYTES:
            raise BallotKeyError(f"a ballot key is {KEY_BYTES} bytes")
        self._secret = secret
        self.key_id = self._derive(b"key-id").hex()[:16]

    @classmethod
    def generate(cls) -> BallotKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def load_or_create(cls, path: Path) -> BallotKey:
        """Read the key file, or create it on first use: mode 0600, never overwritten, and
        whole or absent (a kill mid-creation leaves at most a temp file, never a short key)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            cls._create(path)
        data = path.read_bytes()
        if not data.strip():  # left by a version that created the file before writing it
            raise BallotKeyError(f"ballot key file {path} is empty: no ballot was sealed with "
                                 f"it; delete it and start again")
        try:
            secret = bytes.fromhex(data.strip().decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise BallotKeyError(f"ballot key file {path} is not {KEY_BYTES * 2} hex "
                                 f"digits") from None
        if len(secret) != KEY_BYTES:
            raise BallotKeyError(f"ballot key file {path} is not {KEY_BYTES * 2} hex digits")
        return cls(secret)

    @staticmethod
    def _create(path: Path) -> None:
        """Write a new key to a temp file beside `path`, then link it into place: the link
        fails if another process made the key meanwhile (theirs is kept, and read)."""
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")  # never reused
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the new name survives a power cut
            finally:
                os.close(dir_fd)
        finally:
            tmp.unlink(missing_ok=True)

    def _derive(self, label: bytes) -> bytes:
        return hmac.new(self._secret, b"hopso-ballot-key:v1:" + label, hashlib.sha256).digest()

    def for_vote(self, vote_id: int, key_id: str | None) -> VoteSeal:
        if key_id is not None and key_id != self.key_id:
            raise BallotKeyMismatch(
                "this vote was opened by a server process with another ballot key; give every "
                "process the same key file (HOPSO_BALLOT_KEY_FILE)")
        return VoteSeal(vote_id, self._derive(b"enc:%d" % vote_id),
                        self._derive(b"lookup:%d" % vote_id))
