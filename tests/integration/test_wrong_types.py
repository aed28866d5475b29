"""Every exception that leaves a public method is a KeyLedgerError: a value of the wrong
type is refused as InvalidInput naming the argument, on every store, and nothing is
recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keyledger import Actor, InvalidInput, Ledger

WRONG = [123, ["x"], b"bytes", object(), 1.5]
"""Values of the wrong type for a text argument (``None`` is allowed for some)."""

NUMBERS: dict[str, type | tuple[type, ...]] = {"interval": (int, float), "limit": int, "after": int}
"""Arguments that take numbers: the wrong values above that are numbers are right there."""

Call = Callable[[Ledger, Actor, str, Any], object]

CALLS: dict[str, tuple[str, Call]] = {
    "create_key name": ("name", lambda lg, a, k, v: lg.create_key(a, name=v)),
    "create_key purpose": ("purpose", lambda lg, a, k, v: lg.create_key(a, name="n", purpose=v)),
    "create_key application": ("application", lambda lg, a, k, v: lg.create_key(a, name="n", application=v)),
    "regenerate_key key_id": ("key_id", lambda lg, a, k, v: lg.regenerate_key(a, v, mode="grace")),
    "regenerate_key mode": ("mode", lambda lg, a, k, v: lg.regenerate_key(a, k, mode=v)),
    "revoke_key key_id": ("key_id", lambda lg, a, k, v: lg.revoke_key(a, v)),
    "revoke_key reason": ("reason", lambda lg, a, k, v: lg.revoke_key(a, k, reason=v)),
    "revoke_user_access user_id": ("user_id", lambda lg, a, k, v: lg.revoke_user_access(a, v)),
    "restore_user_access user_id": ("user_id", lambda lg, a, k, v: lg.restore_user_access(a, v)),
    "keys account": ("account", lambda lg, a, k, v: lg.keys(v)),
    "keys at": ("at", lambda lg, a, k, v: lg.keys("acme", at=v)),
    "valid_keys account": ("account", lambda lg, a, k, v: lg.valid_keys(v)),
    "key account": ("account", lambda lg, a, k, v: lg.key(v, k)),
    "key key_id": ("key_id", lambda lg, a, k, v: lg.key("acme", v)),
    "history account": ("account", lambda lg, a, k, v: lg.history(v, k)),
    "history key_id": ("key_id", lambda lg, a, k, v: lg.history("acme", v)),
    "audit account": ("account", lambda lg, a, k, v: lg.audit(account=v)),
    "audit key_id": ("key_id", lambda lg, a, k, v: lg.audit(key_id=v)),
    "audit actor": ("actor", lambda lg, a, k, v: lg.audit(actor=v)),
    "audit action": ("action", lambda lg, a, k, v: lg.audit(action=v)),
    "audit since": ("since", lambda lg, a, k, v: lg.audit(since=v)),
    "audit limit": ("limit", lambda lg, a, k, v: lg.audit(limit=v)),
    "audit after": ("after", lambda lg, a, k, v: lg.audit(after=v)),
    "report account": ("account", lambda lg, a, k, v: lg.report(v)),
    "report now": ("now", lambda lg, a, k, v: lg.report("acme", v)),
    "report stale_after": ("stale_after", lambda lg, a, k, v: lg.report("acme", stale_after=v)),
    "report unused_after": ("unused_after", lambda lg, a, k, v: lg.report("acme", unused_after=v)),
    "verify at": ("at", lambda lg, a, k, v: lg.verify("kl_x", at=v)),
    "verify strict": ("strict", lambda lg, a, k, v: lg.verify("kl_x", strict=v)),
    "rebuild_projections progress": ("progress", lambda lg, a, k, v: lg.rebuild_projections(v)),
    "check_integrity progress": ("progress", lambda lg, a, k, v: lg.check_integrity(v)),
    "start_sweeper interval": ("interval", lambda lg, a, k, v: lg.start_sweeper(v)),
}


@pytest.mark.parametrize("store", ["memory", "sqlite"])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_wrong_type_is_refused_naming_the_argument(
    name: str,
    store: str,
    open_ledger: Callable[..., Ledger],
    sqlite_url: str,
    alice: Actor,
    admin: Actor,
) -> None:
    ledger = open_ledger("memory://" if store == "memory" else sqlite_url)
    key_id = ledger.create_key(alice, name="existing").key_id
    argument, call = CALLS[name]
    actor = admin if "user_access" in name else alice
    before = ledger.audit()

    for value in WRONG:
        if isinstance(value, NUMBERS.get(argument, ())):
            continue  # right for this argument
        with pytest.raises(InvalidInput) as raised:
            call(ledger, actor, key_id, value)
        assert raised.value.field == argument, (value, raised.value)

    assert ledger.audit() == before


def test_an_unknown_export_filter_is_refused(open_ledger: Callable[..., Ledger], tmp_path: Path) -> None:
    """A misspelt filter is InvalidInput naming the filters, and no file is written."""
    ledger = open_ledger()
    target = tmp_path / "audit.jsonl"

    with pytest.raises(InvalidInput) as raised:
        ledger.export_audit(target, acount="acme")

    assert raised.value.field == "filters"
    assert "acount" in str(raised.value)
    assert not target.exists()


def test_strict_can_be_switched_on_an_open_ledger_but_only_to_a_bool(
    open_ledger: Callable[..., Ledger],
) -> None:
    """``ledger.strict`` stays settable, as it was an attribute; anything but a bool is refused."""
    ledger = open_ledger()

    ledger.strict = True

    assert ledger.strict is True
    with pytest.raises(InvalidInput) as raised:
        ledger.strict = "yes"  # type: ignore[assignment]
    assert raised.value.field == "strict"
    assert ledger.strict is True
