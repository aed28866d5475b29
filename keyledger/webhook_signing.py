"""Signing webhooks, verifying them at the receiver, and sealing the signing secret.

**The signature** is Stripe's scheme: ``Keyledger-Signature: t=<unix time>,v1=<hex>``,
where the hex is HMAC-SHA256, keyed by the endpoint's signing secret, of the time, a
dot and the exact body bytes. :func:`verify_webhook` is what a receiver calls: it
recomputes the HMAC, compares in constant time (``hmac.compare_digest``) with every
``v1`` in the header (several during a secret's rotation), and refuses a time more than
``tolerance`` seconds from its clock, so a captured request cannot be replayed later.

**The secret at rest.** The ledger's rule is that secrets are never at rest, and a
signing secret is a credential: whoever holds it can forge deliveries. Yet the process
that delivers must have it, after every restart, possibly on another machine. So it is
stored only sealed: AES-256-GCM under a key the host provides in
:data:`KEY_VARIABLE` (32 random bytes, base64), which is never written anywhere by
keyledger; the webhook's id and URL are bound in as associated data, so a sealed secret
copied onto another row, or a row whose URL was changed in the database, no longer
opens (delivery stops, failing closed, rather than signing for another URL). The
database alone, a backup or a dump, holds nothing that signs. Without the key,
:meth:`keyledger.Ledger.add_webhook` refuses, and a delivering process without it (or
with another) records the failure and delivers nothing for that webhook. The secret
never appears in a ``repr``, a log line, an error or the delivery state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time

from keyledger.domain import InvalidInput

SIGNATURE_HEADER = "Keyledger-Signature"
DEFAULT_TOLERANCE = 300
KEY_VARIABLE = "KEYLEDGER_WEBHOOK_KEY"
"""The host's key that seals webhook signing secrets: 32 bytes, base64."""
GENERATE_KEY = "python -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())'"
NONCE_BYTES = 12
TAG_BYTES = 16


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``Keyledger-Signature`` value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_digest(body, secret, timestamp)}"


def _digest(body: bytes, secret: str, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_webhook(
    body: bytes | str,
    header: str | None,
    secret: str,
    tolerance: int = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (the ``Keyledger-Signature`` value) signs ``body`` (the raw
    request body, as received: parse it after verifying) with ``secret``, at a time
    within ``tolerance`` seconds of ``now`` (default: this machine's clock). Never
    raises on a malformed header: it is simply not a valid signature.

    A receiver should also drop repeats: deliveries are at least once, and each carries
    its ledger ``position`` (in the body, and the ``Keyledger-Position`` header)."""
    if not isinstance(secret, str) or not secret:
        raise InvalidInput("secret", "must be the webhook's signing secret")
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance <= 0:
        raise InvalidInput("tolerance", "must be a positive number of seconds")
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes) or not isinstance(header, str) or len(header) > 4096:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    moment = time.time() if now is None else now
    if abs(moment - timestamp) > tolerance:
        return False
    expected = _digest(body, secret, timestamp).encode()
    found = False
    for candidate in candidates:
        # Compare against every one, found or not: no early exit to time.
        found |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
    return found


def host_key() -> bytes:
    """The sealing key from :data:`KEY_VARIABLE`; :class:`InvalidInput` naming the
    variable (never its value) if it is missing or not 32 bytes of base64."""
    text = os.environ.get(KEY_VARIABLE, "")
    if not text:
        raise InvalidInput(
            KEY_VARIABLE,
            "is not set: webhook signing secrets are stored only sealed under a key of the host's; "
            f"generate one with {GENERATE_KEY} and give the same to every process that adds or "
            "delivers webhooks",
        )
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise InvalidInput(KEY_VARIABLE, f"must be 32 bytes in base64; generate one with {GENERATE_KEY}")
    return key


def _context(webhook_id: str, url: str) -> bytes:
    return f"keyledger webhook secret\0{webhook_id}\0{url}".encode()


def seal(secret: str, key: bytes, webhook_id: str, url: str) -> bytes:
    """``secret`` encrypted and authenticated under ``key``, bound to the webhook."""
    from Crypto.Cipher import AES

    nonce = secrets.token_bytes(NONCE_BYTES)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    cipher.update(_context(webhook_id, url))
    sealed, tag = cipher.encrypt_and_digest(secret.encode())
    return nonce + sealed + tag


class SecretUnavailable(Exception):
    """A sealed secret that does not open with this host's key (missing, or another)."""


def unseal(sealed: bytes, key: bytes, webhook_id: str, url: str) -> str:
    """The secret :func:`seal` sealed; :class:`SecretUnavailable` if the key, the id
    or the URL is not the one it was sealed with, or the bytes were changed."""
    from Crypto.Cipher import AES

    nonce, body, tag = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:-TAG_BYTES], sealed[-TAG_BYTES:]
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    cipher.update(_context(webhook_id, url))
    try:
        return cipher.decrypt_and_verify(body, tag).decode()
    except (ValueError, UnicodeDecodeError):
        raise SecretUnavailable(
            f"the signing secret of webhook {webhook_id} does not open with this host's {KEY_VARIABLE} "
            "(missing, another key, or the webhook's row was changed)"
        ) from None
