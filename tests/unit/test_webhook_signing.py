"""Webhook signatures (Stripe's scheme) and the sealed signing secret."""

from __future__ import annotations

import base64

import pytest

from keyledger import InvalidInput, verify_webhook
from keyledger.webhook_signing import KEY_VARIABLE, SecretUnavailable, host_key, seal, sign, unseal

SECRET = "whsec_0123456789abcdefghijklmnop"
BODY = b'{"position": 7, "action": "KeyRevoked"}'
NOW = 1_800_000_000
KEY = bytes(range(32))


class TestVerify:
    def test_a_signature_made_with_the_secret_verifies(self) -> None:
        """The header ``sign`` makes verifies for the same body, secret and time."""
        assert verify_webhook(BODY, sign(BODY, SECRET, NOW), SECRET, now=NOW)
        assert verify_webhook(BODY.decode(), sign(BODY, SECRET, NOW), SECRET, now=NOW + 299)

    @pytest.mark.parametrize(
        ("body", "secret", "now"),
        [
            (BODY + b" ", SECRET, NOW),
            (BODY.replace(b"7", b"8"), SECRET, NOW),
            (BODY, SECRET + "x", NOW),
            (BODY, SECRET, NOW + 301),
            (BODY, SECRET, NOW - 301),
        ],
        ids=["body-extended", "body-changed", "other-secret", "replayed-late", "from-the-future"],
    )
    def test_a_changed_body_another_secret_or_a_stale_time_fails(
        self, body: bytes, secret: str, now: int
    ) -> None:
        """Any change of the body, the wrong secret, or a time outside the tolerance fails."""
        assert not verify_webhook(body, sign(BODY, SECRET, NOW), secret, now=now)

    def test_the_time_is_signed_too(self) -> None:
        """Moving a captured signature to a fresh time does not make it valid."""
        header = sign(BODY, SECRET, NOW).replace(f"t={NOW}", f"t={NOW + 1000}")

        assert not verify_webhook(BODY, header, SECRET, now=NOW + 1000)

    @pytest.mark.parametrize(
        "header",
        [None, "", "garbage", "t=abc,v1=00", f"t={NOW}", "v1=" + "0" * 64, f"t={NOW},v1=\u00e9", "x" * 5000],
    )
    def test_a_malformed_header_is_invalid_not_an_exception(self, header: str | None) -> None:
        assert not verify_webhook(BODY, header, SECRET, now=NOW)

    def test_any_of_several_v1_signatures_may_match(self) -> None:
        """During a rotation a header may carry a signature per secret; one match is enough."""
        good = sign(BODY, SECRET, NOW).split(",")[1]

        assert verify_webhook(BODY, f"t={NOW},v1={'0' * 64},{good}", SECRET, now=NOW)

    def test_a_bad_tolerance_or_secret_is_refused(self) -> None:
        with pytest.raises(InvalidInput, match="tolerance"):
            verify_webhook(BODY, sign(BODY, SECRET, NOW), SECRET, tolerance=0)
        with pytest.raises(InvalidInput, match="secret"):
            verify_webhook(BODY, sign(BODY, SECRET, NOW), "")


class TestSealing:
    def test_a_sealed_secret_opens_with_the_same_key_id_and_url(self) -> None:
        sealed = seal(SECRET, KEY, "wh_1", "https://example.com/hook")

        assert unseal(sealed, KEY, "wh_1", "https://example.com/hook") == SECRET
        assert SECRET.encode() not in sealed
        assert SECRET[6:22].encode() not in sealed

    @pytest.mark.parametrize(
        ("key", "webhook_id", "url"),
        [
            (bytes(32), "wh_1", "https://example.com/hook"),
            (KEY, "wh_2", "https://example.com/hook"),
            (KEY, "wh_1", "https://attacker.example/hook"),
        ],
        ids=["another-key", "another-row", "url-changed"],
    )
    def test_it_does_not_open_under_another_key_row_or_url(
        self, key: bytes, webhook_id: str, url: str
    ) -> None:
        """A row whose URL was changed in the database no longer signs: delivery fails closed."""
        sealed = seal(SECRET, KEY, "wh_1", "https://example.com/hook")

        with pytest.raises(SecretUnavailable) as raised:
            unseal(sealed, key, webhook_id, url)
        assert SECRET not in str(raised.value)

    def test_the_host_key_is_required_and_never_echoed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(KEY_VARIABLE, raising=False)
        with pytest.raises(InvalidInput, match=KEY_VARIABLE):
            host_key()

        monkeypatch.setenv(KEY_VARIABLE, "not-base64-and-secretish")
        with pytest.raises(InvalidInput, match=KEY_VARIABLE) as raised:
            host_key()
        assert "secretish" not in str(raised.value)

        monkeypatch.setenv(KEY_VARIABLE, base64.b64encode(KEY).decode())
        assert host_key() == KEY
