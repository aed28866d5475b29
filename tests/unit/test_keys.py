"""The key format: generation, checksum, digest and hint, prefixes, parsing and diagnosis."""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from collections.abc import Callable

import pytest

from keyledger import InvalidInput
from keyledger.domain.keys import (
    BASE62,
    MAX_CREDENTIAL_LENGTH,
    CredentialParser,
    KeyDiagnosis,
    check_prefix,
    checksum,
    diagnose_key,
    digest,
    extract_key,
    generate_key,
    hint,
    new_key_id,
    random_base62,
)

KEY_SHAPE = re.compile(r"kl_[0-9A-Za-z]{32}[0-9A-Za-z]{6}")


def basic(user_and_password: str) -> str:
    """An ``Authorization: Basic`` value for ``user:password`` text."""
    return "Basic " + base64.b64encode(user_and_password.encode()).decode("ascii")


def from_base62(text: str) -> int:
    """The number a base62 string spells, most significant digit first."""
    number = 0
    for character in text:
        number = number * 62 + BASE62.index(character)
    return number


def with_char_changed(key: str, index: int) -> str:
    """``key`` with the base62 character at ``index`` replaced by another base62 one."""
    replacement = "A" if key[index] != "A" else "B"
    return key[:index] + replacement + key[index + 1 :]


BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@pytest.fixture
def key() -> str:
    return generate_key("kl")


class TestGeneratedKeys:
    def test_a_key_is_the_prefix_32_random_and_6_check_characters(self, key: str) -> None:
        """A generated key reads prefix, underscore, 32 base62 and 6 base62 check characters."""
        assert KEY_SHAPE.fullmatch(key), key
        assert len(key) == len("kl_") + 32 + 6

    def test_a_key_ends_with_the_checksum_of_its_head(self, key: str) -> None:
        """A generated key's last 6 characters are the checksum of everything before them."""
        head, check = key[:-6], key[-6:]

        assert check == checksum(head)

    def test_a_key_with_a_longer_prefix_keeps_the_same_body(self) -> None:
        """A key with a two-part prefix has the same 38-character body after it."""
        key = generate_key("acme_live")

        assert key.startswith("acme_live_")
        assert len(key) == len("acme_live_") + 38
        assert key[-6:] == checksum(key[:-6])

    def test_two_generated_keys_differ(self) -> None:
        """Two generated keys are never the same."""
        first = generate_key("kl")

        second = generate_key("kl")

        assert first != second
        assert first[3:35] != second[3:35]

    def test_each_base62_character_comes_from_exactly_four_byte_values(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The random characters are uniform: every byte value is drawn once, those below
        248 map onto the 62 characters four times each, and 248-255 are dropped."""
        every_byte = bytes(range(256))
        monkeypatch.setattr("keyledger.domain.keys.secrets.token_bytes", lambda n: every_byte)

        drawn = random_base62(248)

        assert sorted(drawn) == sorted(BASE62 * 4)
        assert drawn[:62] == BASE62

    def test_dropped_bytes_are_replaced_by_more_drawn(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A draw of only bytes 248-255 gives nothing; the next draw fills the key (62 and
        247 map to the same characters as 0 and 61)."""
        draws = iter([bytes([255] * 36), bytes([0, 1, 61, 62, 247, 248] * 7)])
        monkeypatch.setattr("keyledger.domain.keys.secrets.token_bytes", lambda n: next(draws))

        assert random_base62(32) == ("01z0z" * 7)[:32]

    def test_a_key_id_is_key_and_16_base62_characters(self) -> None:
        """A key id reads ``key_`` then 16 random base62 characters."""
        assert re.fullmatch(r"key_[0-9A-Za-z]{16}", new_key_id())


class TestChecksum:
    def test_the_checksum_is_the_crc32_of_the_head_in_base62(self) -> None:
        """The checksum spells the CRC32 of its input as 6 base62 digits."""
        head = "kl_" + "0123456789abcdefghijABCDEFGHIJxy"

        check = checksum(head)

        assert len(check) == 6
        assert set(check) <= set(BASE62)
        assert from_base62(check) == zlib.crc32(head.encode("ascii"))

    def test_a_zero_crc_is_padded_to_six_characters(self) -> None:
        """The checksum of an input whose CRC32 is zero is six zeros."""
        assert zlib.crc32(b"") == 0

        assert checksum("") == "000000"

    def test_one_changed_character_changes_the_checksum(self, key: str) -> None:
        """Changing one character of the head changes its checksum."""
        head = key[:-6]

        changed = with_char_changed(head, 10)

        assert checksum(changed) != checksum(head)


class TestDigestAndHint:
    def test_the_digest_is_the_sha256_of_the_key(self, key: str) -> None:
        """The digest is the raw SHA-256 of the key's ASCII bytes."""
        assert digest(key) == hashlib.sha256(key.encode("ascii")).digest()
        assert len(digest(key)) == 32

    def test_different_keys_have_different_digests(self) -> None:
        """Two keys have two digests."""
        assert digest(generate_key("kl")) != digest(generate_key("kl"))

    def test_the_hint_is_the_prefix_and_the_last_four_characters(self, key: str) -> None:
        """The hint shows the prefix and the last 4 characters only."""
        assert hint(key) == "kl_..." + key[-4:]

    def test_the_hint_keeps_a_two_part_prefix(self) -> None:
        """The hint of a key with an inner underscore in its prefix shows the whole prefix."""
        key = generate_key("acme_live")

        assert hint(key) == "acme_live_..." + key[-4:]

    def test_the_hint_reveals_nothing_of_the_random_part(self, key: str) -> None:
        """The hint holds none of the 32 random characters."""
        assert key[3:35] not in hint(key)
        assert len(hint(key)) == len("kl_...") + 4


class TestCheckPrefix:
    @pytest.mark.parametrize("prefix", ["kl", "acme_live", "a", "0123456789abcdef", "k1_2"])
    def test_a_valid_prefix_is_returned(self, prefix: str) -> None:
        """A prefix of 1 to 16 lowercase letters and digits, with at most one inner '_', passes."""
        assert check_prefix(prefix) == prefix

    @pytest.mark.parametrize(
        "prefix",
        [
            "",
            "0123456789abcdefg",
            "KL",
            "Kl",
            "acme_live_eu",
            "acme__live",
            "_kl",
            "kl_",
            "_",
            "k-l",
            "k l",
            "klé",
        ],
    )
    def test_an_invalid_prefix_is_refused(self, prefix: str) -> None:
        """A prefix outside the format raises InvalidInput naming key_prefix."""
        with pytest.raises(InvalidInput) as raised:
            check_prefix(prefix)

        assert raised.value.field == "key_prefix"

    @pytest.mark.parametrize("prefix", [None, 12, b"kl", ["kl"]])
    def test_a_prefix_that_is_not_a_string_is_refused(self, prefix: object) -> None:
        """A prefix that is not a str raises InvalidInput naming key_prefix."""
        with pytest.raises(InvalidInput) as raised:
            check_prefix(prefix)

        assert raised.value.field == "key_prefix"


class TestExtractKey:
    def test_a_raw_key_is_returned(self, key: str) -> None:
        """A bare key is returned as it is."""
        assert extract_key(key, "kl") == key

    def test_a_basic_credential_with_an_empty_password_gives_the_key(self, key: str) -> None:
        """``Basic base64(key:)`` gives the key."""
        assert extract_key(basic(key + ":"), "kl") == key

    def test_a_bearer_credential_gives_the_key(self, key: str) -> None:
        """``Bearer key`` gives the key."""
        assert extract_key("Bearer " + key, "kl") == key

    @pytest.mark.parametrize("scheme", ["basic", "BASIC", "bAsIc"])
    def test_the_basic_scheme_is_case_insensitive(self, key: str, scheme: str) -> None:
        """The Basic scheme is recognised in any case."""
        credential = basic(key + ":").replace("Basic", scheme, 1)

        assert extract_key(credential, "kl") == key

    @pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
    def test_the_bearer_scheme_is_case_insensitive(self, key: str, scheme: str) -> None:
        """The Bearer scheme is recognised in any case."""
        assert extract_key(f"{scheme} {key}", "kl") == key

    @pytest.mark.parametrize("template", ["  {}", "{}\n", "\t {} \r\n", "Bearer   {}  ", "  Bearer {}"])
    def test_surrounding_whitespace_is_ignored(self, key: str, template: str) -> None:
        """Whitespace around the credential or the key does not stop the key being found."""
        assert extract_key(template.format(key), "kl") == key

    def test_surrounding_whitespace_around_a_basic_credential_is_ignored(self, key: str) -> None:
        """Whitespace around a Basic credential does not stop the key being found."""
        assert extract_key("  " + basic(key + ":") + " \n", "kl") == key

    def test_a_key_with_a_two_part_prefix_is_returned(self) -> None:
        """A key of a ledger whose prefix has an inner underscore is found."""
        key = generate_key("acme_live")

        assert extract_key(key, "acme_live") == key
        assert extract_key("Bearer " + key, "acme_live") == key

    def test_a_credential_of_exactly_the_maximum_length_is_read(self, key: str) -> None:
        """A credential padded to exactly the maximum length still gives its key."""
        credential = key.ljust(MAX_CREDENTIAL_LENGTH)

        assert extract_key(credential, "kl") == key

    @pytest.mark.parametrize("credential", [None, b"kl_", 42, 4.2, ["kl_"], object()])
    def test_a_credential_that_is_not_a_string_gives_none(self, credential: object) -> None:
        """A credential of the wrong type gives None without raising."""
        assert extract_key(credential, "kl") is None

    def test_an_oversized_credential_gives_none(self, key: str) -> None:
        """A credential longer than the maximum gives None, even if it holds a key."""
        credential = key.ljust(MAX_CREDENTIAL_LENGTH + 1)

        assert extract_key(credential, "kl") is None

    def test_an_oversized_bearer_credential_gives_none(self, key: str) -> None:
        """A Bearer credential longer than the maximum gives None."""
        credential = "Bearer " + key + " " * MAX_CREDENTIAL_LENGTH

        assert extract_key(credential, "kl") is None

    @pytest.mark.parametrize("replacement", ["é", "\uff11", "٣", "\u00b2"])
    def test_a_non_ascii_character_in_the_key_gives_none(self, key: str, replacement: str) -> None:
        """A key with a non-ASCII character (even a letter or digit elsewhere) gives None."""
        credential = key[:20] + replacement + key[21:]

        assert extract_key(credential, "kl") is None
        assert extract_key("Bearer " + credential, "kl") is None

    def test_a_non_ascii_basic_credential_gives_none(self, key: str) -> None:
        """A Basic credential with non-ASCII characters gives None."""
        assert extract_key("Basic é" + basic(key + ":")[6:], "kl") is None

    def test_a_basic_credential_decoding_to_non_ascii_gives_none(self) -> None:
        """A Basic credential whose decoded text is not ASCII gives None."""
        credential = "Basic " + base64.b64encode("kl_é:".encode()).decode("ascii")

        assert extract_key(credential, "kl") is None

    @pytest.mark.parametrize("encoded", ["!!!!", "a2xf*", "a2xfa", "a2x=fQ==", "a2xf\x00"])
    def test_bad_base64_gives_none(self, encoded: str) -> None:
        """A Basic credential that is not valid base64 gives None."""
        assert extract_key("Basic " + encoded, "kl") is None

    @pytest.mark.parametrize(
        "corrupt",
        [
            lambda encoded: encoded[:10] + "!" + encoded[10:],
            lambda encoded: encoded[:10] + "*" + encoded[11:],
            lambda encoded: encoded[:-2] + "=" + encoded[-1],
            lambda encoded: "=" + encoded,
            lambda encoded: encoded[:-1],
            lambda encoded: encoded[:20] + "-_" + encoded[22:],
            lambda encoded: encoded + "=",  # padding where none is due: Python's strict mode takes it
            lambda encoded: encoded + "==",
            lambda encoded: encoded + "====",
        ],
    )
    def test_a_corrupted_encoding_of_a_key_gives_none(self, key: str, corrupt: Callable[[str], str]) -> None:
        """A Basic credential holding a key, whose base64 is corrupted, gives None."""
        encoded = basic(key + ":")[len("Basic ") :]

        credential = "Basic " + corrupt(encoded)

        assert extract_key(credential, "kl") is None

    def test_bad_base64_padding_gives_none(self, key: str) -> None:
        """A Basic credential whose base64 lost its padding gives None."""
        encoded = base64.b64encode((key + ":x").encode()).decode("ascii")
        assert encoded.endswith("=")

        assert extract_key("Basic " + encoded.rstrip("="), "kl") is None

    def test_a_padded_encoding_with_stray_bits_gives_none(self) -> None:
        """Only the canonical base64 is read: a last character whose unused bits are not
        zero decodes to the same bytes but is another spelling, and is refused."""
        key = generate_key("acme")  # "acme_" and 38 characters: 44 bytes with the colon, one "="
        canonical = base64.b64encode(f"{key}:".encode()).decode("ascii")
        assert canonical.endswith("=")
        assert not canonical.endswith("==")
        stray = canonical[:-2] + BASE64_ALPHABET[BASE64_ALPHABET.index(canonical[-2]) ^ 1] + "="
        assert base64.b64decode(stray) == base64.b64decode(canonical)

        assert extract_key("Basic " + canonical, "acme") == key
        assert extract_key("Basic " + stray, "acme") is None
        parser = CredentialParser("acme")  # verification's fast path reads the same
        assert parser.digest("Basic " + canonical) == hashlib.sha256(key.encode()).digest()
        assert parser.digest("Basic " + stray) is None
        assert parser.digest("Basic " + canonical + "=") is None

    @pytest.mark.parametrize("password", ["x", "secret", ":"])
    def test_a_basic_credential_with_a_password_gives_none(self, key: str, password: str) -> None:
        """A Basic credential with a non-empty password gives None."""
        assert extract_key(basic(f"{key}:{password}"), "kl") is None

    def test_a_key_in_the_password_field_gives_none(self, key: str) -> None:
        """A key pasted into the Basic password field, with an empty user name, gives None."""
        assert extract_key(basic(":" + key), "kl") is None

    def test_a_basic_credential_without_a_colon_gives_none(self, key: str) -> None:
        """A Basic credential that is only the key, with no colon, gives None."""
        assert extract_key(basic(key), "kl") is None

    def test_a_wrong_prefix_gives_none(self, key: str) -> None:
        """A key of another prefix and the same length gives None."""
        other = "xx" + key[2:]

        assert extract_key(other, "kl") is None
        assert extract_key("Bearer " + other, "kl") is None
        assert extract_key(basic(other + ":"), "kl") is None

    def test_a_key_of_another_ledger_gives_none(self) -> None:
        """A well-formed key of a ledger with another prefix gives None."""
        assert extract_key(generate_key("acme_live"), "kl") is None
        assert extract_key(generate_key("kl"), "acme_live") is None

    def test_a_missing_separator_gives_none(self, key: str) -> None:
        """A key whose separator after the prefix is not '_' gives None."""
        assert extract_key("kl-" + key[3:], "kl") is None

    def test_a_key_one_character_short_gives_none(self, key: str) -> None:
        """A key one character too short gives None."""
        assert extract_key(key[:-1], "kl") is None
        assert extract_key(basic(key[:-1] + ":"), "kl") is None

    def test_a_key_one_character_long_gives_none(self, key: str) -> None:
        """A key one character too long gives None."""
        assert extract_key(key + "a", "kl") is None
        assert extract_key("Bearer " + key + "a", "kl") is None

    @pytest.mark.parametrize("character", ["-", "_", "+", "/", "=", ".", " "])
    def test_a_character_outside_base62_gives_none(self, key: str, character: str) -> None:
        """A key with one character outside base62 gives None."""
        credential = key[:20] + character + key[21:]

        assert extract_key(credential, "kl") is None

    @pytest.mark.parametrize("scheme", ["Token", "Digest", "ApiKey", "Bearer:", "Basic:"])
    def test_an_unknown_scheme_gives_none(self, key: str, scheme: str) -> None:
        """A credential with a scheme other than Basic or Bearer gives None."""
        assert extract_key(f"{scheme} {key}", "kl") is None

    @pytest.mark.parametrize("credential", ["", "   ", "Bearer", "Bearer ", "Basic ", "kl_"])
    def test_an_empty_or_truncated_credential_gives_none(self, credential: str) -> None:
        """An empty credential, or a scheme with nothing after it, gives None."""
        assert extract_key(credential, "kl") is None


class TestDiagnoseKey:
    def test_a_generated_key_is_well_formed(self, key: str) -> None:
        """A generated key is diagnosed as well-formed, raw or in a header."""
        assert diagnose_key(key, "kl") is KeyDiagnosis.WELL_FORMED
        assert diagnose_key("Bearer " + key, "kl") is KeyDiagnosis.WELL_FORMED
        assert diagnose_key(basic(key + ":"), "kl") is KeyDiagnosis.WELL_FORMED

    @pytest.mark.parametrize("index", [3, 20, 34, 35, 40])
    def test_one_changed_character_is_a_bad_checksum(self, key: str, index: int) -> None:
        """A key with one base62 character changed, in the random or the check part, fails its checksum."""
        typo = with_char_changed(key, index)

        assert diagnose_key(typo, "kl") is KeyDiagnosis.BAD_CHECKSUM

    def test_two_swapped_characters_are_a_bad_checksum(self) -> None:
        """A key with two neighbouring characters swapped fails its checksum."""
        key = "kl_" + "ab" + "0" * 30
        key += checksum(key)

        swapped = "kl_" + "ba" + key[5:]

        assert diagnose_key(key, "kl") is KeyDiagnosis.WELL_FORMED
        assert diagnose_key(swapped, "kl") is KeyDiagnosis.BAD_CHECKSUM

    def test_another_prefix_is_a_wrong_prefix(self, key: str) -> None:
        """A key with another prefix is diagnosed as a wrong prefix."""
        assert diagnose_key("xx" + key[2:], "kl") is KeyDiagnosis.WRONG_PREFIX
        assert diagnose_key(generate_key("acme_live"), "kl") is KeyDiagnosis.WRONG_PREFIX

    @pytest.mark.parametrize("cut", [1, 10])
    def test_a_short_key_is_a_wrong_length(self, key: str, cut: int) -> None:
        """A key with characters missing is diagnosed as the wrong length."""
        assert diagnose_key(key[:-cut], "kl") is KeyDiagnosis.WRONG_LENGTH

    def test_a_long_key_is_a_wrong_length(self, key: str) -> None:
        """A key with a character too many is diagnosed as the wrong length."""
        assert diagnose_key(key + "a", "kl") is KeyDiagnosis.WRONG_LENGTH

    def test_a_character_outside_base62_is_reported(self, key: str) -> None:
        """A key of the right length with a character outside base62 is reported as such."""
        assert diagnose_key(key[:20] + "-" + key[21:], "kl") is KeyDiagnosis.BAD_CHARACTERS

    @pytest.mark.parametrize(
        "credential",
        [None, b"kl_", 42, "Token abc", "Basic !!!!", "x" * (MAX_CREDENTIAL_LENGTH + 1)],
    )
    def test_something_that_is_no_credential_is_malformed(self, credential: object) -> None:
        """A credential of the wrong type, scheme, encoding or size is malformed."""
        assert diagnose_key(credential, "kl") is KeyDiagnosis.MALFORMED

    def test_a_basic_credential_with_a_password_is_malformed(self, key: str) -> None:
        """A Basic credential that carries a password is malformed."""
        assert diagnose_key(basic(key + ":pw"), "kl") is KeyDiagnosis.MALFORMED


class TestUnicodeAroundAKey:
    def test_unicode_whitespace_around_a_key_is_refused(self) -> None:
        """A key wrapped in non-ASCII whitespace is not a credential: extract_key returns None."""
        from keyledger.domain.keys import extract_key, generate_key

        key = generate_key("kl")

        assert extract_key("\u00a0" + key + "\u3000", "kl") is None
        assert extract_key(" " + key + "\t", "kl") == key


class TestTheParsersHotPath:
    """``CredentialParser.digest`` (verification's fast path) agrees with the full
    grammar on every spelling: the digest of the key it finds, or ``None``."""

    @pytest.mark.parametrize("prefix", ["kl", "acme_live"])
    def test_agrees_with_the_full_grammar(self, prefix: str) -> None:
        parser = CredentialParser(prefix)
        key = generate_key(prefix)
        other = generate_key("zz")
        spellings: list[object] = [
            key,
            " " + key,
            key + "\n",
            "Bearer " + key,
            "bearer  " + key,
            basic(key + ":"),
            "basic " + basic(key + ":")[6:],
            " " + basic(key + ":") + " ",
            basic(key + ":x"),
            basic(key),
            "Basic " + base64.b64encode(b"\xff" + key.encode() + b":").decode()[: len(basic(key + ":")) - 6],
            key + "a",
            other,
            basic(other + ":"),
            "Token " + key,
            key.encode(),
            None,
            42,
            "x" * (MAX_CREDENTIAL_LENGTH + 1),
            "é" + key,
        ]

        for credential in spellings:
            found = parser.key(credential)
            expected = None if found is None else hashlib.sha256(found.encode()).digest()
            assert parser.digest(credential) == expected, credential

    def test_leaves_the_alphabet_to_the_lookup(self) -> None:
        """A bare key's characters are not checked on the fast path: a text of a key's
        prefix and length digests as it is, and no issued key has that digest."""
        parser = CredentialParser("kl")
        odd = generate_key("kl")[:-1] + "!"

        assert parser.key(odd) is None
        assert parser.digest(odd) == hashlib.sha256(odd.encode()).digest()

    def test_takes_the_fast_path_for_a_bare_key_and_an_exact_basic_value(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        parser = CredentialParser("kl")
        key = generate_key("kl")
        monkeypatch.setattr(parser, "key", lambda credential: pytest.fail("the full grammar was used"))

        assert parser.digest(key) == digest(key)
        assert parser.digest(basic(key + ":")) == digest(key)
