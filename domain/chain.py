"""The hash chain that makes stored history tamper-evident.

Each event's ``chain`` is SHA-256 over the previous event's ``chain`` (hex) and the
event's canonical content: its aggregate id, version, topic and stored fields (the
timestamp included, ``chain`` itself excluded), as compact JSON with sorted keys.
Changing, removing or reordering a stored event breaks the chain from that event on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

GENESIS = "0" * 64
"""The ``chain`` value that precedes an account's first event."""


def canonical(content: Any) -> bytes:
    """Compact JSON with sorted keys, UTF-8: the bytes the chain hashes."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link(
    previous: str,
    originator_id: str,
    version: int,
    topic: str,
    state: dict[str, Any],
    encode: Callable[[Any], bytes] = canonical,
) -> str:
    """The ``chain`` of an event, given the previous one and the event's content.

    ``state`` is the event's stored fields; a ``chain`` entry in it is ignored.
    ``encode`` writes the canonical bytes; a faster encoder may be passed where it
    writes exactly the same bytes (the integrity check passes orjson's).
    """
    fields = {name: value for name, value in state.items() if name != "chain"}
    content = {"id": originator_id, "version": version, "topic": topic, "state": fields}
    return hashlib.sha256(previous.encode("ascii") + encode(content)).hexdigest()
