"""The key format, its generation, parsing and digests.

A key reads ``{prefix}_{random}{check}``: ``prefix`` is per ledger (1 to 16 characters of
``[a-z0-9]``, with at most one inner ``_``, such as ``acme_live``), ``random`` is 32
base62 characters from :mod:`secrets` (about 190 bits), and ``check`` is the CRC32 of
``prefix_random`` in 6 base62 characters, so secret scanners and :func:`diagnose_key`
tell a typo from an unknown key offline. The ledger keeps only the SHA-256 digest of a
key and a display hint (prefix and last 4 characters).

:class:`CredentialParser` is the one reader of presented credentials: a raw key or an
``Authorization`` value (``Basic base64(key:)`` or ``Bearer key``), never raising. Its
:meth:`~CredentialParser.digest` is the hot path of verification and skips the
checksum (a digest hit implies it); :meth:`~CredentialParser.diagnose` checks it.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
import secrets
import zlib
from collections.abc import Callable, Sequence
from enum import StrEnum

from keyledger.domain.errors import InvalidInput

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 32
CHECK_LENGTH = 6
BODY_LENGTH = RANDOM_LENGTH + CHECK_LENGTH
PREFIX_MAX = 16
MAX_CREDENTIAL_LENGTH = 1024
"""Credentials longer than this are refused before any decoding."""
DEFAULT_PREFIX = "kl"

_PREFIX = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)?")


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is a valid key prefix, else raise :class:`InvalidInput`."""
    if not isinstance(prefix, str) or not 1 <= len(prefix) <= PREFIX_MAX:
        raise InvalidInput("key_prefix", f"must be 1 to {PREFIX_MAX} characters")
    if not _PREFIX.fullmatch(prefix):
        raise InvalidInput("key_prefix", "must be lowercase letters and digits, with at most one inner '_'")
    return prefix


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(BASE62[remainder])
    return "".join(reversed(digits))


def checksum(head: str) -> str:
    """The 6-character base62 CRC32 of ``prefix_random``."""
    return _base62(zlib.crc32(head.encode("ascii")), CHECK_LENGTH)


def random_base62(length: int) -> str:
    """``length`` characters drawn uniformly from :data:`BASE62` by :mod:`secrets`.

    Bytes from ``secrets.token_bytes`` below 248 (4 x 62, the largest multiple of 62 in a
    byte) give ``BASE62[byte % 62]``, each character from exactly 4 byte values; bytes
    248-255 are dropped and more drawn.
    One system call for a whole key, where ``secrets.choice`` made one per character.
    """
    chosen: list[str] = []
    while len(chosen) < length:
        chosen.extend(BASE62[byte % 62] for byte in secrets.token_bytes(length + 4) if byte < _UNIFORM_BELOW)
    return "".join(chosen[:length])


_UNIFORM_BELOW = 256 - 256 % len(BASE62)


def generate_key(prefix: str) -> str:
    """A new random key with the given (already checked) prefix."""
    random_part = random_base62(RANDOM_LENGTH)
    head = f"{prefix}_{random_part}"
    return head + checksum(head)


def digest(key: str) -> bytes:
    """The SHA-256 digest of a key: what the ledger stores and looks up."""
    return hashlib.sha256(key.encode("ascii")).digest()


def hint(key: str) -> str:
    """What may be shown of a key: its prefix and last 4 characters."""
    prefix = key[: -BODY_LENGTH - 1]
    return f"{prefix}_...{key[-4:]}"


def _basic_user(encoded: str) -> str | None:
    # Only the canonical base64 of the bytes: strict mode still takes padding where none
    # is due ("...kI6=") and stray bits in the last character before "=", other spellings
    # of the same bytes, which the grammar does not allow.
    try:
        raw = encoded.encode("ascii")
        decoded = binascii.a2b_base64(raw, strict_mode=True)
        text = decoded.decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    if _b2a_base64(decoded, newline=False) != raw:
        return None
    user, colon, password = text.partition(":")
    if not colon or password:
        return None
    return user


class KeyDiagnosis(StrEnum):
    """What :meth:`CredentialParser.diagnose` found wrong with a presented key, if anything."""

    WELL_FORMED = "well-formed"
    MALFORMED = "malformed credential"
    WRONG_PREFIX = "wrong prefix"
    WRONG_LENGTH = "wrong length"
    BAD_CHARACTERS = "characters outside base62"
    BAD_CHECKSUM = "checksum mismatch (a typo?)"


_sha256 = hashlib.sha256
_a2b_base64 = binascii.a2b_base64
_b2a_base64 = binascii.b2a_base64


class CredentialParser:
    """The one reader of presented credentials for the keys of one prefix.

    A credential is a bare key, ``Bearer key`` or ``Basic base64(key + ":")`` (the key as
    user name with an empty password), schemes in any case, with ASCII whitespace around
    it or after the scheme; at most :data:`MAX_CREDENTIAL_LENGTH` ASCII characters.
    Anything else is refused before any lookup, and nothing here raises.

    :meth:`digest` is verification's hot path: a bare key, or a ``Basic`` value exactly
    as clients send it, goes straight to its digest; every other spelling goes through
    :meth:`key`, the full grammar. Neither checks the checksum (a digest hit implies it,
    and the alphabet); :meth:`diagnose`, the slow path for people, does.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = check_prefix(prefix)
        self._head = prefix + "_"
        self._head_bytes = self._head.encode()
        self._length = len(self._head) + BODY_LENGTH
        self._basic_length = len("Basic ") + 4 * -(-(self._length + 1) // 3)

    def digest(self, credential: object) -> bytes | None:
        """The SHA-256 digest of the key ``credential`` carries, if it has a key's shape."""
        if type(credential) is str:
            size = len(credential)
            if size == self._length and credential.startswith(self._head) and credential.isascii():
                return _sha256(credential.encode()).digest()
            if size == self._basic_length and credential.startswith("Basic ") and credential.isascii():
                try:
                    user = _a2b_base64(credential[6:], strict_mode=True)
                except binascii.Error:
                    return None
                if user[-1:] != b":" or not user.startswith(self._head_bytes) or not user.isascii():
                    return None
                # Of the canonical length, so no padding is missing or extra; where there
                # is padding (a prefix of some lengths), no stray bits before it either.
                if credential[-1] == "=" and _b2a_base64(user, newline=False) != credential[6:].encode():
                    return None
                return _sha256(user[:-1]).digest()
        key = self.key(credential)
        return None if key is None else _sha256(key.encode()).digest()

    def key(self, credential: object) -> str | None:
        """The key inside a raw key or an ``Authorization`` value, if it has a key's
        shape (the checksum unchecked), else ``None``."""
        text = self._unwrap(credential)
        return text if text is not None and self._shape(text) is None else None

    def diagnose(self, credential: object) -> KeyDiagnosis:
        """Why ``credential`` is not a key of this prefix, checksum included (the
        diagnostic path, for people: it tells a typo from an unknown key offline)."""
        text = self._unwrap(credential)
        if text is None:
            return KeyDiagnosis.MALFORMED
        problem = self._shape(text)
        if problem is not None:
            return problem
        head = text[:-CHECK_LENGTH]
        return (
            KeyDiagnosis.WELL_FORMED if checksum(head) == text[-CHECK_LENGTH:] else KeyDiagnosis.BAD_CHECKSUM
        )

    def _unwrap(self, credential: object) -> str | None:
        """The text a credential presents as the key: the grammar's schemes and
        whitespace removed; ``None`` if it follows none of its spellings."""
        if (
            not isinstance(credential, str)
            or len(credential) > MAX_CREDENTIAL_LENGTH
            or not credential.isascii()
        ):
            return None
        text = credential.strip()
        scheme, space, rest = text.partition(" ")
        if not space:
            return text or None
        lowered = scheme.lower()
        if lowered == "basic":
            return _basic_user(rest.strip())
        if lowered == "bearer":
            return rest.strip()
        return None

    def _shape(self, text: str) -> KeyDiagnosis | None:
        """What is wrong with the shape of ``text`` as a key of this prefix, if anything."""
        head = len(self._head)
        if not text.startswith(self._head) or "_" in text[head:]:
            return KeyDiagnosis.WRONG_PREFIX
        if len(text) != self._length:
            return KeyDiagnosis.WRONG_LENGTH
        if not text[head:].isascii() or not text[head:].isalnum():
            return KeyDiagnosis.BAD_CHARACTERS
        return None


@functools.lru_cache(maxsize=16)
def parser_for(prefix: str) -> CredentialParser:
    """The parser of one prefix (kept: a ledger, the CLI and tests share it)."""
    return CredentialParser(prefix)


def digester(prefixes: Sequence[str]) -> Callable[[object], bytes | None]:
    """The digest of a credential carrying a key of any of ``prefixes`` (the
    :meth:`CredentialParser.digest` of the one prefix itself, when there is one)."""
    digests = [parser_for(prefix).digest for prefix in prefixes]
    if len(digests) == 1:
        return digests[0]

    def digest(credential: object) -> bytes | None:
        for one in digests:
            found = one(credential)
            if found is not None:
                return found
        return None

    return digest


def diagnose_any(credential: object, prefixes: Sequence[str]) -> KeyDiagnosis:
    """:func:`diagnose_key` for the first of ``prefixes`` whose keys ``credential`` could
    be (the first prefix's diagnosis when it has none of them)."""
    diagnoses = [diagnose_key(credential, prefix) for prefix in prefixes]
    return next((d for d in diagnoses if d is not KeyDiagnosis.WRONG_PREFIX), diagnoses[0])


def extract_key(credential: object, prefix: str) -> str | None:
    """:meth:`CredentialParser.key` for ``prefix``."""
    return parser_for(prefix).key(credential)


def diagnose_key(credential: object, prefix: str) -> KeyDiagnosis:
    """:meth:`CredentialParser.diagnose` for ``prefix``."""
    return parser_for(prefix).diagnose(credential)


def contains_key(text: str, prefix: str) -> bool:
    """Whether ``text`` holds something shaped like a key of ``prefix`` (so that a key
    pasted into a name, note or user id is refused instead of stored)."""
    return _key_pattern(prefix).search(text) is not None


@functools.lru_cache(maxsize=16)
def _key_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z0-9_]){re.escape(prefix)}_[0-9A-Za-z]{{{BODY_LENGTH}}}(?![0-9A-Za-z])")


def is_key_id(value: object) -> bool:
    """Whether ``value`` has the shape of a public key id (``key_`` + 16 base62)."""
    return (
        isinstance(value, str)
        and len(value) == KEY_ID_LENGTH
        and value.startswith("key_")
        and value.isascii()
        and value[4:].isalnum()
    )


KEY_ID_LENGTH = 4 + 16


def new_key_id() -> str:
    """A new public key id: ``key_`` and 16 random base62 characters."""
    return "key_" + random_base62(16)
