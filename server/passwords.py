"""Password hashing (argon2id) and random secrets."""

from __future__ import annotations

import hashlib
import os
import secrets

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

# argon2id with the library's vetted defaults. The test suite sets HOPSO_FAST_HASH=1 to use
# argon2-cffi's CHEAPEST profile (still argon2id; hashes stay verifiable either way).
_hasher = (PasswordHasher.from_parameters(profiles.CHEAPEST)
           if os.environ.get("HOPSO_FAST_HASH") == "1" else PasswordHasher())
# A real hash to verify against when the user does not exist, so timing does not reveal it.
_DUMMY = _hasher.hash("hopso-dummy-password")

MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


UNUSABLE_HASH = "!"  # never verifies: for accounts whose password is set later


def new_password() -> str:
    """~95 bits, easy to type from a printed line."""
    return secrets.token_urlsafe(12)


def new_token() -> str:
    """256-bit session token for the cookie."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
