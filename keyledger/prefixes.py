"""The key prefix, recorded with the ledger rather than configured per process.

A ledger records the prefix it issues keys under (setting ``key_prefix``) and every
prefix it has ever issued keys under (setting ``key_prefixes``), when it is first opened.
From then on a process opened without a prefix takes the recorded one, a process asking
for the recorded one gets it, and a process asking for another is refused (naming where
its prefix came from) rather than issuing keys the others would refuse. Verification
accepts a key of any prefix the ledger has issued under, so changing the prefix
(:meth:`keyledger.Ledger.change_key_prefix`, ``keyledger prefix NEW``) never locks out the
keys already handed out.

A ledger created before prefixes were recorded records, at its first open, the prefixes
its catalogue's key hints show (each hint starts with its key's prefix) and, as the
current one, the prefix asked for, else the one its keys show if they show one, else the
default.

Processes opened before a change keep the prefixes they read at open until reopened:
change the prefix, then restart the services that share the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from keyledger.domain import InvalidInput
from keyledger.domain import keys as keyformat
from keyledger.projections.ports import ViewStore

CURRENT = "key_prefix"
ISSUED = "key_prefixes"


@dataclass(frozen=True, slots=True)
class Prefixes:
    """The prefix new keys get, and every prefix whose keys verify (the current one first)."""

    current: str
    accepted: tuple[str, ...]


def recorded(views: ViewStore, wanted: str | None, source: str) -> Prefixes:
    """The ledger's prefixes, recorded now if this is its first open; ``wanted`` (from
    ``source``: the argument or the environment variable that set it) must be the
    recorded one."""
    current = views.setting(CURRENT)
    if current is None:
        shown = sorted({hint.split("_...", 1)[0] for hint in views.key_hints() if "_..." in hint})
        first = wanted or (shown[0] if len(shown) == 1 else keyformat.DEFAULT_PREFIX)
        current = views.record_setting(CURRENT, first, replace=False)
        _add_issued(views, [current, *shown])
    elif current not in _issued(views):
        _add_issued(views, [current])  # a change that raced another (see _add_issued)
    if wanted is not None and wanted != current:
        raise InvalidInput(
            source,
            f"this ledger issues keys under the prefix {current!r}, not {wanted!r}: open it without a "
            f"prefix (or with {current!r}), or change its prefix first (keyledger prefix {wanted})",
        )
    return Prefixes(current, _accepted(views, current))


def change(views: ViewStore, new: str) -> Prefixes:
    """Record ``new`` as the prefix of the keys the ledger issues from now on; keys of the
    earlier prefixes keep working."""
    prefix = keyformat.check_prefix(new)
    views.record_setting(CURRENT, prefix, replace=True)
    _add_issued(views, [prefix])
    return Prefixes(prefix, _accepted(views, prefix))


def adopt(views: ViewStore, prefixes: Prefixes) -> None:
    """Record ``prefixes`` as they are (a copy takes its source's)."""
    views.record_setting(CURRENT, prefixes.current, replace=True)
    _add_issued(views, list(prefixes.accepted))


def _issued(views: ViewStore) -> list[str]:
    text = views.setting(ISSUED)
    return [str(prefix) for prefix in orjson.loads(text)] if text else []


def _add_issued(views: ViewStore, prefixes: list[str]) -> None:
    # Read, merge and write again: two processes changing the prefix at the same moment
    # may lose one addition; the current prefix is added again at the next open.
    merged = sorted(set(_issued(views)) | set(prefixes))
    views.record_setting(ISSUED, orjson.dumps(merged).decode(), replace=True)


def _accepted(views: ViewStore, current: str) -> tuple[str, ...]:
    return (current, *(prefix for prefix in _issued(views) if prefix != current))
