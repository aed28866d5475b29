"""The chain's canonical bytes are the standard library's compact, sorted JSON.

The integrity check writes them with orjson (``canonical_json``), ten times faster; a
chain it recomputes must equal the one the Keyring wrote, so the bytes must be the same:
these tests compare the two on every code point, on generated values of every type an
event holds, and pin the chain of one stored example.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from keyledger.adapters.driven.transcoding import canonical_json
from keyledger.domain.chain import GENESIS, canonical, link


def stdlib(content: Any) -> bytes:
    """The definition in ``keyledger.domain.chain``, spelled out."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
LEAF = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | TEXT
VALUES = st.recursive(LEAF, lambda inner: st.lists(inner) | st.dictionaries(TEXT, inner), max_leaves=20)


def test_every_code_point_is_written_as_the_standard_library_writes_it() -> None:
    points = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(points), 4096):
        text = "".join(points[start : start + 4096])
        content = {"k": text, text[:8]: [text[-8:]]}
        assert canonical_json(content) == canonical(content) == stdlib(content), (
            f"differs in code points from {ord(text[0]):#x}"
        )


@settings(max_examples=500)
@given(VALUES)
def test_generated_values_are_written_as_the_standard_library_writes_them(value: Any) -> None:
    assert canonical_json(value) == canonical(value) == stdlib(value)


def test_an_integer_beyond_64_bits_falls_back_to_the_standard_library() -> None:
    content = {"big": 2**70, "small": -(2**65)}
    assert (
        canonical(content)
        == stdlib(content)
        == b'{"big":1180591620717411303424,"small":-36893488147419103232}'
    )


def test_a_stored_events_chain_is_pinned() -> None:
    """The chain of one KeyCreated, as the first release wrote it (standard library JSON)."""
    state = {
        "timestamp": "2026-01-02T03:04:05.000006Z",
        "account": "acme",
        "actor": "alice",
        "chain": "ignored",
        "key_id": "key_0123456789abcdef",
        "name": "CI déploiement \u2028 \x1f",
        "purpose": "",
        "application": "",
        "created_by": "alice",
        "digest": "ab" * 32,
        "hint": "kl_…wxyz",
    }
    originator = "6f1c8a52-3d1e-5b7a-9c2f-4e8d0b6a1f37"
    fields = {name: value for name, value in state.items() if name != "chain"}
    content = {"id": originator, "version": 1, "topic": "keyledger.KeyCreated", "state": fields}
    expected = hashlib.sha256(GENESIS.encode() + stdlib(content)).hexdigest()
    assert link(GENESIS, originator, 1, "keyledger.KeyCreated", state) == expected
    assert link(GENESIS, originator, 1, "keyledger.KeyCreated", state, canonical_json) == expected
    assert expected == "01d94f5ccbe41017165f584ee7e9f95b1d58e12380448ae68d0ec4b5ba1dc9c7"
