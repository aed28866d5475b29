"""A checkpoint kept outside the database catches what the unkeyed hash chain cannot:
an account's newest events cut off, or an event edited and every chain after it
recomputed, with the views rebuilt to match, so that the check without the checkpoint
passes.

Each tampering test records events in two accounts, takes a checkpoint, closes the
ledger, rewrites the store's tables directly as someone with write access to the
database could, rebuilds the views, then checks with a fresh ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from pydantic import ValidationError

from keyledger import AccountHead, Actor, Checkpoint, IntegrityReport, InvalidInput, Ledger, Permission
from keyledger.domain import Keyring
from keyledger.domain.chain import GENESIS, link
from keyledger.domain.keys import checksum, digest
from keyledger.testing import ManualClock

if TYPE_CHECKING:
    from tests.integration.conftest import StoredRow, StoreTables

ACME = Keyring.id_for("acme")


@pytest.fixture
def gina() -> Actor:
    return Actor(user_id="gina", account="globex", permissions={Permission.INTEGRATION})


def record(ledger: Ledger, clock: ManualClock, alice: Actor, gina: Actor) -> None:
    """Eleven events over acme (seven) and globex (four)."""
    acme = [ledger.create_key(alice, name=f"Acme {i}").key_id for i in range(3)]
    globex = [ledger.create_key(gina, name=f"Globex {i}").key_id for i in range(2)]
    clock.advance(seconds=30)
    ledger.regenerate_key(alice, acme[0], mode="grace")
    ledger.regenerate_key(gina, globex[0], mode="immediate")
    ledger.revoke_key(alice, acme[1], reason="unused")
    ledger.create_key(gina, name="Globex late")
    ledger.create_key(alice, name="Acme late")
    ledger.regenerate_key(alice, acme[2], mode="immediate")


@pytest.fixture
def taken(durable_url: str, clock: ManualClock, alice: Actor, gina: Actor) -> Checkpoint:
    """The checkpoint of a store holding eleven events over acme and globex, its ledger closed."""
    with Ledger.open(durable_url, clock=clock) as ledger:
        record(ledger, clock, alice, gina)
        return ledger.checkpoint()


def checked(url: str, clock: ManualClock, checkpoint: Checkpoint | None = None) -> IntegrityReport:
    """A fresh ledger's integrity report on ``url`` (against ``checkpoint``, if given)."""
    with Ledger.open(url, clock=clock) as ledger:
        return ledger.check_integrity(checkpoint=checkpoint)


def rebuilt(url: str, clock: ManualClock) -> None:
    """Rebuild the views from the (tampered) events, as the tamperer would to hide it."""
    with Ledger.open(url, clock=clock) as ledger:
        ledger.rebuild_projections()


def stream(tables: StoreTables, account: str) -> list[StoredRow]:
    keyring_id = Keyring.id_for(account)
    return [row for row in tables.rows() if row.originator_id == keyring_id]


def rewrite(
    tables: StoreTables, account: str, version: int, change: Callable[[dict[str, Any]], None]
) -> None:
    """Apply ``change`` to the account's event at ``version`` and recompute the chain of
    that event and of every later one: a consistent, wholly forged history."""
    previous = GENESIS
    for row in stream(tables, account):
        state = orjson.loads(row.state)
        if row.version == version:
            change(state)
        if row.version >= version:
            state["chain"] = link(previous, str(row.originator_id), row.version, row.topic, state)
            tables.set_state(row.position, orjson.dumps(state))
        previous = state["chain"]


class TestTheCheckpoint:
    """A checkpoint holds the log position, the time, and each account's stream head."""

    def test_holds_each_accounts_version_and_chain_at_the_head(
        self, durable_url: str, clock: ManualClock, alice: Actor, gina: Actor, store_tables: type[StoreTables]
    ) -> None:
        """Every account's newest version and chain, the newest position and the clock's time."""
        with Ledger.open(durable_url, clock=clock) as ledger:
            record(ledger, clock, alice, gina)

            point = ledger.checkpoint()

        tables = store_tables(durable_url)
        newest = {account: stream(tables, account)[-1] for account in ("acme", "globex")}
        assert point.position == tables.rows()[-1].position
        assert point.taken_at == clock()
        assert point.accounts == {
            account: AccountHead(version=row.version, chain=orjson.loads(row.state)["chain"])
            for account, row in newest.items()
        }
        assert point.accounts["acme"].version == 7

    def test_round_trips_as_json(
        self, store_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """A checkpoint written as JSON and read back is equal, on every kind of store."""
        ledger = open_ledger(store_url)
        ledger.create_key(alice, name="Shipping")
        point = ledger.checkpoint()

        restored = Checkpoint.model_validate_json(point.model_dump_json())

        assert restored == point
        assert restored.accounts["acme"].version == 1
        assert ledger.check_integrity(checkpoint=restored).ok

    def test_of_an_empty_ledger_lists_no_account(self, ledger: Ledger) -> None:
        """An empty ledger's checkpoint is at position 0 with no account."""
        point = ledger.checkpoint()

        assert point.position == 0
        assert point.accounts == {}

    @pytest.mark.parametrize(
        "text",
        [
            "not json",
            "{}",
            '{"position": 1, "taken_at": "2026-01-05T09:00:00Z", "accounts": {}, "extra": 1}',
            '{"position": 1, "taken_at": "2026-01-05T09:00:00", "accounts": {}}',
            '{"position": 1, "taken_at": "2026-01-05T09:00:00Z", "accounts": {"a": {"version": 0, '
            '"chain": "' + "0" * 64 + '"}}}',
            '{"position": 1, "taken_at": "2026-01-05T09:00:00Z", "accounts": {"a": {"version": 1, '
            '"chain": "xyz"}}}',
        ],
        ids=["not JSON", "empty", "an unknown field", "a naive time", "version 0", "not a chain"],
    )
    def test_a_malformed_one_is_refused_when_read(self, text: str) -> None:
        """JSON that is not exactly a checkpoint does not validate."""
        with pytest.raises(ValidationError):
            Checkpoint.model_validate_json(text)

    def test_check_refuses_what_is_not_a_checkpoint(self, ledger: Ledger, alice: Actor) -> None:
        """Anything but a Checkpoint given to the check raises InvalidInput naming it."""
        ledger.create_key(alice, name="Shipping")
        as_dict = ledger.checkpoint().model_dump()

        with pytest.raises(InvalidInput, match="checkpoint"):
            ledger.check_integrity(checkpoint=as_dict)  # type: ignore[arg-type]


class TestAnUntouchedLedger:
    """Nothing tampered: the check against the checkpoint passes."""

    def test_passes_against_its_checkpoint(
        self, taken: Checkpoint, durable_url: str, clock: ManualClock
    ) -> None:
        """The ledger the checkpoint was taken from passes against it."""
        report = checked(durable_url, clock, taken)

        assert report.ok, report
        assert report.events_checked == taken.position == 11

    def test_passes_once_history_has_grown_past_it(
        self, taken: Checkpoint, durable_url: str, clock: ManualClock, alice: Actor, gina: Actor
    ) -> None:
        """New events in every account (and a new account) after the checkpoint leave it passing."""
        with Ledger.open(durable_url, clock=clock) as ledger:
            record(ledger, clock, alice, gina)
            ledger.create_key(Actor(user_id="hal", account="initech", permissions=set(Permission)), name="x")

            report = ledger.check_integrity(checkpoint=taken)

        assert report.ok, report
        assert report.events_checked == 23


class TestNewestEventsCut:
    """An account's newest events deleted and the views rebuilt leave a shorter, valid
    chain that only the checkpoint shows."""

    def test_fail_the_check_against_the_checkpoint_naming_the_account(
        self, taken: Checkpoint, durable_url: str, clock: ManualClock, store_tables: type[StoreTables]
    ) -> None:
        """Cutting acme's two newest events passes the plain check but fails against the
        checkpoint, which names acme."""
        tables = store_tables(durable_url)
        for row in stream(tables, "acme")[-2:]:
            tables.delete(row.position)
        rebuilt(durable_url, clock)

        plain = checked(durable_url, clock)
        report = checked(durable_url, clock, taken)

        assert plain.ok, plain
        assert not report.ok
        assert report.reason == (
            "account 'acme' holds 5 event(s), fewer than the 7 of the checkpoint: "
            "its newest events were removed"
        )
        assert report.first_bad_position is None

    def test_fail_even_when_new_events_have_taken_their_versions(
        self,
        taken: Checkpoint,
        durable_url: str,
        clock: ManualClock,
        store_tables: type[StoreTables],
        alice: Actor,
    ) -> None:
        """Cut events replaced by as many new ones (the same versions, other chains) are
        caught as a rewritten history."""
        tables = store_tables(durable_url)
        for row in stream(tables, "acme")[-2:]:
            tables.delete(row.position)
        rebuilt(durable_url, clock)
        with Ledger.open(durable_url, clock=clock) as ledger:
            ledger.create_key(alice, name="Replacement one")
            ledger.create_key(alice, name="Replacement two")

        report = checked(durable_url, clock, taken)

        assert len(stream(tables, "acme")) == 7
        assert not report.ok
        assert report.reason == (
            "account 'acme' differs from the checkpoint at version 7: its history up to there was rewritten"
        )


class TestHistoryRewritten:
    """An event edited, every chain after it recomputed and the views rebuilt: the plain
    check passes, the checkpoint does not."""

    def test_a_key_given_a_secret_the_tamperer_knows_fails_against_the_checkpoint(
        self, taken: Checkpoint, durable_url: str, clock: ManualClock, store_tables: type[StoreTables]
    ) -> None:
        """A key's creation rewritten to the digest of a key the tamperer holds, chains
        recomputed and views rebuilt, verifies and passes the plain check, but fails
        against the checkpoint, which names the account."""
        forged = "kl_" + "F0rgedF0rgedF0rgedF0rgedF0rged00"
        forged += checksum(forged)
        tables = store_tables(durable_url)
        rewrite(tables, "acme", 2, lambda state: state.update(digest=digest(forged).hex()))
        rebuilt(durable_url, clock)

        with Ledger.open(durable_url, clock=clock) as ledger:
            principal = ledger.verify(forged)
            plain = ledger.check_integrity()
            report = ledger.check_integrity(checkpoint=taken)

        assert principal is not None
        assert principal.account == "acme"
        assert plain.ok, plain
        assert not report.ok
        assert report.reason == (
            "account 'acme' differs from the checkpoint at version 7: its history up to there was rewritten"
        )

    def test_an_edit_in_the_second_account_names_that_account(
        self, taken: Checkpoint, durable_url: str, clock: ManualClock, store_tables: type[StoreTables]
    ) -> None:
        """A rewritten globex history is reported as globex's, acme's being intact."""
        tables = store_tables(durable_url)
        rewrite(tables, "globex", 1, lambda state: state.update(name="Renamed"))
        rebuilt(durable_url, clock)

        report = checked(durable_url, clock, taken)

        assert checked(durable_url, clock).ok
        assert not report.ok
        assert report.reason is not None
        assert report.reason.startswith("account 'globex' differs from the checkpoint at version 4")

    def test_an_edit_without_recomputing_is_still_reported_at_its_position(
        self, taken: Checkpoint, durable_url: str, clock: ManualClock, store_tables: type[StoreTables]
    ) -> None:
        """With a checkpoint, an edit that breaks the chain is still reported where it is."""
        tables = store_tables(durable_url)
        target = stream(tables, "acme")[1]
        tables.set_state(target.position, target.state.replace(b"Acme 1", b"Acme X"))

        report = checked(durable_url, clock, taken)

        assert not report.ok
        assert report.first_bad_position == target.position


class TestAnotherLedgersCheckpoint:
    """A checkpoint taken from another ledger does not vouch for this one."""

    def test_fails_naming_the_first_account_that_differs(
        self,
        taken: Checkpoint,
        durable_url: str,
        open_ledger: Callable[..., Ledger],
        clock: ManualClock,
        alice: Actor,
        gina: Actor,
    ) -> None:
        """The same commands recorded in another ledger give other chains: acme differs."""
        other = open_ledger("memory://")
        record(other, clock, alice, gina)
        theirs = other.checkpoint()

        report = checked(durable_url, clock, theirs)

        assert theirs.accounts.keys() == taken.accounts.keys()
        assert theirs.accounts["acme"].version == taken.accounts["acme"].version
        assert checked(durable_url, clock, taken).ok
        assert not report.ok
        assert report.reason == (
            "account 'acme' differs from the checkpoint at version 7: its history up to there was rewritten"
        )

    def test_of_an_account_this_ledger_never_had_fails(
        self, taken: Checkpoint, durable_url: str, open_ledger: Callable[..., Ledger], clock: ManualClock
    ) -> None:
        """A checkpoint listing an account this ledger has no events for fails, naming it."""
        other = open_ledger("memory://")
        other.create_key(Actor(user_id="hal", account="initech", permissions=set(Permission)), name="x")

        report = checked(durable_url, clock, other.checkpoint())

        assert not report.ok
        assert report.reason == (
            "account 'initech' holds 0 event(s), fewer than the 1 of the checkpoint: "
            "its newest events were removed"
        )
