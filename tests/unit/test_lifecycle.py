"""The key lifecycle through the Ledger API, in memory: every transition and refusal."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from keyledger import (
    AccessRevoked,
    Actor,
    InvalidInput,
    KeyAlreadyRevoked,
    KeyNotFound,
    Ledger,
    Permission,
    PermissionDenied,
    UserAccessUnchanged,
)
from keyledger.testing import ManualClock as Clock

GRACE = timedelta(hours=12)
MICROSECOND = timedelta(microseconds=1)


def secret_of(issued: object) -> str:
    return issued.secret.get_secret_value()  # type: ignore[attr-defined, no-any-return]


def actions(ledger: Ledger) -> list[str]:
    return [entry.action for entry in ledger.audit(limit=10_000)]


class TestCreate:
    def test_a_new_key_verifies_as_raw_basic_and_bearer(self, ledger: Ledger, alice: Actor) -> None:
        """A new key verifies as a raw key, as HTTP Basic (key as user name) and as Bearer."""
        issued = ledger.create_key(alice, name="Shipping", purpose="labels", application="ShipStation")
        key = secret_of(issued)

        basic = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        principals = [ledger.verify(key), ledger.verify(basic), ledger.verify(f"Bearer {key}")]

        for principal in principals:
            assert principal is not None
            assert principal.account == "acme"
            assert principal.key_id == issued.key_id
            assert principal.name == "Shipping"
            assert principal.grace_until is None

    def test_the_secret_is_masked_until_unwrapped(self, ledger: Ledger, alice: Actor) -> None:
        """The returned secret masks itself in repr and str and must be unwrapped explicitly."""
        issued = ledger.create_key(alice, name="Shipping")

        key = secret_of(issued)

        assert key.startswith("kl_")
        assert key not in repr(issued)
        assert key not in str(issued)
        assert key not in str(issued.secret)
        assert issued.hint == f"kl_...{key[-4:]}"

    def test_the_catalogue_lists_the_key_without_its_secret(self, ledger: Ledger, alice: Actor) -> None:
        """keys() lists the new key with its labels, creator, status and hint."""
        issued = ledger.create_key(alice, name="Shipping", purpose="labels", application="ShipStation")

        [view] = ledger.keys("acme")

        assert view.key_id == issued.key_id
        assert (view.name, view.purpose, view.application) == ("Shipping", "labels", "ShipStation")
        assert view.created_by == "alice"
        assert view.status == "active"
        assert view.hint == issued.hint
        assert view.grace == ()

    def test_keys_are_listed_in_creation_order(self, ledger: Ledger, alice: Actor, bob: Actor) -> None:
        """keys() lists an account's keys in the order they were created."""
        ids = [ledger.create_key(actor, name=f"k{i}").key_id for i, actor in enumerate([alice, bob, alice])]

        assert [view.key_id for view in ledger.keys("acme")] == ids

    def test_accounts_do_not_see_each_others_keys(self, ledger: Ledger, alice: Actor) -> None:
        """A key of one account is not listed nor manageable in another."""
        issued = ledger.create_key(alice, name="Shipping")
        other = Actor(user_id="eve", account="globex", permissions={Permission.INTEGRATION})

        assert ledger.keys("globex") == []
        with pytest.raises(KeyNotFound):
            ledger.revoke_key(other, issued.key_id)
        assert ledger.verify(secret_of(issued)) is not None


class TestGraceBoundary:
    def test_old_secret_works_until_one_microsecond_before_the_deadline(
        self, ledger: Ledger, alice: Actor, clock: Clock
    ) -> None:
        """A secret retired with grace verifies at grace_until - 1 µs and not at grace_until."""
        old = ledger.create_key(alice, name="Shipping")
        new = ledger.regenerate_key(alice, old.key_id, mode="grace")
        deadline = clock.now + GRACE

        clock.now = deadline - MICROSECOND
        before = ledger.verify(secret_of(old))
        clock.now = deadline
        at = ledger.verify(secret_of(old))

        assert new.previous_valid_until == deadline
        assert before is not None
        assert before.grace_until == deadline
        assert at is None
        assert ledger.verify(secret_of(new)) is not None

    def test_the_boundary_holds_under_freezegun_with_the_system_clock(self, alice: Actor) -> None:
        """With the system clock frozen by freezegun, the deadline holds to the microsecond."""
        with freeze_time("2026-03-01 08:00:00") as frozen, Ledger.open("memory://") as ledger:
            old = ledger.create_key(alice, name="Shipping")
            ledger.regenerate_key(alice, old.key_id, mode="grace")

            frozen.tick(GRACE - MICROSECOND)
            before = ledger.verify(secret_of(old))
            frozen.tick(MICROSECOND)
            at = ledger.verify(secret_of(old))

        assert before is not None
        assert before.grace_until == datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
        assert at is None

    def test_validity_does_not_wait_for_grace_expired(
        self, ledger: Ledger, alice: Actor, clock: Clock
    ) -> None:
        """A passed deadline refuses the secret whether or not GraceExpired is recorded."""
        old = ledger.create_key(alice, name="Shipping")
        ledger.regenerate_key(alice, old.key_id, mode="grace")
        clock.advance(hours=12)

        refused_before_sweep = ledger.verify(secret_of(old))
        recorded = ledger.expire_grace()
        refused_after_sweep = ledger.verify(secret_of(old))

        assert refused_before_sweep is None
        assert recorded == 1
        assert refused_after_sweep is None
        assert actions(ledger) == ["KeyCreated", "KeyRegenerated", "GraceExpired"]

    def test_grace_expired_takes_effect_at_the_deadline(
        self, ledger: Ledger, alice: Actor, clock: Clock
    ) -> None:
        """GraceExpired recorded late occurs at grace_until and is recorded when the sweep ran."""
        old = ledger.create_key(alice, name="Shipping")
        ledger.regenerate_key(alice, old.key_id, mode="grace")
        deadline = clock.now + GRACE
        clock.advance(hours=30)

        ledger.expire_grace()

        [entry] = ledger.audit(action="GraceExpired")
        assert entry.occurred_at == deadline
        assert entry.recorded_at == clock.now
        assert entry.actor is None
        assert entry.key_id == old.key_id

    def test_expire_grace_records_nothing_before_the_deadline(
        self, ledger: Ledger, alice: Actor, clock: Clock
    ) -> None:
        """expire_grace() records nothing while every deadline is still ahead, and only once after."""
        old = ledger.create_key(alice, name="Shipping")
        ledger.regenerate_key(alice, old.key_id, mode="grace")
        clock.now += GRACE - MICROSECOND

        early = ledger.expire_grace()
        clock.now += MICROSECOND
        due = ledger.expire_grace()
        again = ledger.expire_grace()

        assert (early, due, again) == (0, 1, 0)

    def test_a_later_regeneration_never_extends_an_earlier_deadline(
        self, ledger: Ledger, alice: Actor, clock: Clock
    ) -> None:
        """Each secret in grace keeps its own deadline; regenerating again does not extend it."""
        first = ledger.create_key(alice, name="Shipping")
        first_deadline = clock.now + GRACE
        second = ledger.regenerate_key(alice, first.key_id, mode="grace")
        clock.advance(hours=5)
        second_deadline = clock.now + GRACE
        ledger.regenerate_key(alice, first.key_id, mode="grace")

        clock.now = first_deadline
        first_at_own_deadline = ledger.verify(secret_of(first))
        second_still = ledger.verify(secret_of(second))
        clock.now = second_deadline
        second_at_own_deadline = ledger.verify(secret_of(second))

        assert first_at_own_deadline is None
        assert second_still is not None
        assert second_still.grace_until == second_deadline
        assert second_at_own_deadline is None

    def test_keys_lists_secrets_in_grace_until_their_deadline(
        self, ledger: Ledger, alice: Actor, clock: Clock
    ) -> None:
        """keys() shows a retired secret's hint and deadline while it is in grace, and not after."""
        old = ledger.create_key(alice, name="Shipping")
        ledger.regenerate_key(alice, old.key_id, mode="grace")
        deadline = clock.now + GRACE

        [during] = ledger.keys("acme")
        clock.now = deadline
        [after] = ledger.keys("acme")

        assert [(g.hint, g.grace_until) for g in during.grace] == [(old.hint, deadline)]
        assert after.grace == ()

    def test_the_grace_period_is_configurable(
        self, open_ledger: Callable[..., Ledger], alice: Actor, clock: Clock
    ) -> None:
        """A ledger opened with a one-hour grace period retires secrets for one hour."""
        ledger = open_ledger(grace_period=timedelta(hours=1))
        old = ledger.create_key(alice, name="Shipping")
        ledger.regenerate_key(alice, old.key_id, mode="grace")

        clock.advance(minutes=59, seconds=59, microseconds=999_999)
        before = ledger.verify(secret_of(old))
        clock.advance(microseconds=1)

        assert before is not None
        assert ledger.verify(secret_of(old)) is None


class TestImmediateRegenerationAndRevocation:
    def test_immediate_regeneration_ends_the_old_secret_at_once(self, ledger: Ledger, alice: Actor) -> None:
        """Regenerating immediately refuses the old secret the instant the call returns."""
        old = ledger.create_key(alice, name="Shipping")

        new = ledger.regenerate_key(alice, old.key_id, mode="immediate")

        assert ledger.verify(secret_of(old)) is None
        assert ledger.verify(secret_of(new)) is not None
        assert new.previous_valid_until is None

    def test_immediate_regeneration_ends_secrets_in_grace(self, ledger: Ledger, alice: Actor) -> None:
        """An immediate regeneration also ends every secret still in grace."""
        first = ledger.create_key(alice, name="Shipping")
        second = ledger.regenerate_key(alice, first.key_id, mode="grace")

        third = ledger.regenerate_key(alice, first.key_id, mode="immediate")

        assert ledger.verify(secret_of(first)) is None
        assert ledger.verify(secret_of(second)) is None
        assert ledger.verify(secret_of(third)) is not None
        assert ledger.keys("acme")[0].grace == ()

    def test_revocation_ends_every_secret_of_the_key(self, ledger: Ledger, alice: Actor) -> None:
        """A revoked key verifies with none of its secrets, including those in grace."""
        first = ledger.create_key(alice, name="Shipping")
        second = ledger.regenerate_key(alice, first.key_id, mode="grace")

        ledger.revoke_key(alice, first.key_id, reason="compromised")

        assert ledger.verify(secret_of(first)) is None
        assert ledger.verify(secret_of(second)) is None
        [view] = ledger.keys("acme")
        assert (view.status, view.revoked_reason, view.hint, view.grace) == (
            "revoked",
            "compromised",
            None,
            (),
        )

    def test_a_revoked_key_can_never_be_managed_again(self, ledger: Ledger, alice: Actor) -> None:
        """Regenerating or revoking a revoked key raises KeyAlreadyRevoked and records nothing."""
        issued = ledger.create_key(alice, name="Shipping")
        ledger.revoke_key(alice, issued.key_id)
        position = ledger.position

        with pytest.raises(KeyAlreadyRevoked):
            ledger.regenerate_key(alice, issued.key_id, mode="grace")
        with pytest.raises(KeyAlreadyRevoked):
            ledger.revoke_key(alice, issued.key_id)

        assert ledger.position == position

    def test_another_user_of_the_account_may_manage_the_key(
        self, ledger: Ledger, alice: Actor, bob: Actor
    ) -> None:
        """Any integration user of the account regenerates and revokes its keys; the creator stays."""
        issued = ledger.create_key(alice, name="Shipping")

        ledger.regenerate_key(bob, issued.key_id, mode="immediate")

        [view] = ledger.keys("acme")
        assert view.created_by == "alice"
        assert [e.actor for e in ledger.audit()] == ["alice", "bob"]


class TestUserAccess:
    def test_revoking_a_user_removes_the_keys_they_created_or_received(
        self, ledger: Ledger, alice: Actor, bob: Actor, admin: Actor
    ) -> None:
        """Revoking a user removes every key they created or hold a working secret of, in one event."""
        mine = [ledger.create_key(alice, name=f"alice-{i}") for i in range(3)]
        graced = ledger.regenerate_key(alice, mine[0].key_id, mode="grace")
        theirs = ledger.create_key(bob, name="bob's")
        regenerated_by_alice = ledger.regenerate_key(alice, theirs.key_id, mode="immediate")
        bobs_own = ledger.create_key(bob, name="bob's own")
        ledger.revoke_key(alice, mine[2].key_id)

        removed = ledger.revoke_user_access(admin, "alice")

        assert removed == [mine[0].key_id, mine[1].key_id, theirs.key_id]
        assert ledger.verify(secret_of(mine[0])) is None
        assert ledger.verify(secret_of(graced)) is None
        assert ledger.verify(secret_of(mine[1])) is None
        assert ledger.verify(secret_of(regenerated_by_alice)) is None
        assert ledger.verify(secret_of(bobs_own)) is not None
        [entry] = ledger.audit(action="UserAccessRevoked")
        assert entry.details["removed_key_ids"] == removed
        assert entry.details["user_id"] == "alice"

    def test_a_revoked_user_cannot_manage_keys_until_restored(
        self, ledger: Ledger, alice: Actor, admin: Actor
    ) -> None:
        """A revoked user's commands raise AccessRevoked until their access is restored."""
        old = ledger.create_key(alice, name="Shipping")
        ledger.revoke_user_access(admin, "alice")
        position = ledger.position

        with pytest.raises(AccessRevoked):
            ledger.create_key(alice, name="again")
        with pytest.raises(AccessRevoked):
            ledger.revoke_key(alice, old.key_id)
        assert ledger.position == position

        ledger.restore_user_access(admin, "alice")
        fresh = ledger.create_key(alice, name="again")

        assert ledger.verify(secret_of(fresh)) is not None
        assert ledger.verify(secret_of(old)) is None
        assert ledger.keys("acme")[0].status == "revoked"

    def test_user_access_changes_need_user_management(self, ledger: Ledger, alice: Actor, bob: Actor) -> None:
        """Revoking or restoring access without user_management raises PermissionDenied."""
        ledger.create_key(bob, name="bob's")

        with pytest.raises(PermissionDenied):
            ledger.revoke_user_access(alice, "bob")
        with pytest.raises(PermissionDenied):
            ledger.restore_user_access(alice, "bob")

        assert actions(ledger) == ["KeyCreated"]

    def test_access_changes_that_change_nothing_are_refused(self, ledger: Ledger, admin: Actor) -> None:
        """Revoking a revoked user or restoring an unrevoked one raises UserAccessUnchanged."""
        with pytest.raises(UserAccessUnchanged):
            ledger.restore_user_access(admin, "alice")
        ledger.revoke_user_access(admin, "alice")

        with pytest.raises(UserAccessUnchanged):
            ledger.revoke_user_access(admin, "alice")

        assert actions(ledger) == ["UserAccessRevoked"]

    def test_an_administrator_cannot_revoke_their_own_access(self, ledger: Ledger, admin: Actor) -> None:
        """Revoking one's own access raises PermissionDenied and records nothing."""
        with pytest.raises(PermissionDenied):
            ledger.revoke_user_access(admin, "root")

        assert actions(ledger) == []


class TestRefusals:
    def test_managing_keys_needs_the_integration_permission(self, ledger: Ledger, alice: Actor) -> None:
        """An actor without integration cannot create, regenerate or revoke; nothing is recorded."""
        issued = ledger.create_key(alice, name="Shipping")
        viewer = Actor(user_id="vic", account="acme", permissions=set())

        with pytest.raises(PermissionDenied):
            ledger.create_key(viewer, name="mine")
        with pytest.raises(PermissionDenied):
            ledger.regenerate_key(viewer, issued.key_id, mode="grace")
        with pytest.raises(PermissionDenied):
            ledger.revoke_key(viewer, issued.key_id)

        assert actions(ledger) == ["KeyCreated"]
        assert ledger.verify(secret_of(issued)) is not None

    @pytest.mark.parametrize("key_id", ["key_0000000000000000", "not-a-key", "", "kl_x" * 20])
    def test_unknown_or_malformed_key_ids_are_not_found(
        self, ledger: Ledger, alice: Actor, key_id: str
    ) -> None:
        """A key id that is not a key of the account raises KeyNotFound, without echoing a secret."""
        ledger.create_key(alice, name="Shipping")

        with pytest.raises(KeyNotFound):
            ledger.regenerate_key(alice, key_id, mode="grace")
        with pytest.raises(KeyNotFound):
            ledger.revoke_key(alice, key_id)

        assert actions(ledger) == ["KeyCreated"]

    def test_a_secret_passed_as_key_id_is_not_echoed(self, ledger: Ledger, alice: Actor) -> None:
        """Passing a secret where a key id belongs raises KeyNotFound without the secret in it."""
        issued = ledger.create_key(alice, name="Shipping")
        key = secret_of(issued)

        with pytest.raises(KeyNotFound) as raised:
            ledger.revoke_key(alice, key)

        assert key[3:19] not in str(raised.value)

    @pytest.mark.parametrize(
        "credential",
        [
            None,
            b"kl_bytes",
            42,
            "",
            " ",
            "Basic",
            "Basic !!!",
            "Bearer",
            "Digest abc",
            "kl_short",
            "x" * 5000,
            "Basic " + base64.b64encode(b"kl_" + b"a" * 38 + b":pw").decode(),
            "kl_" + "é" * 38,
        ],
    )
    def test_malformed_credentials_are_refused_without_an_exception(
        self, ledger: Ledger, alice: Actor, credential: object
    ) -> None:
        """Malformed credentials verify as None and never raise."""
        ledger.create_key(alice, name="Shipping")

        assert ledger.verify(credential) is None

    def test_a_near_miss_key_is_refused(self, ledger: Ledger, alice: Actor) -> None:
        """A key with one character changed, or another prefix, does not verify."""
        key = secret_of(ledger.create_key(alice, name="Shipping"))
        swapped = "A" if key[10] != "A" else "B"

        assert ledger.verify(key[:10] + swapped + key[11:]) is None
        assert ledger.verify("xx" + key[2:]) is None
        assert ledger.verify(key + "0") is None

    def test_a_ledger_only_accepts_keys_of_its_prefix(
        self, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """Keys carry the ledger's prefix, and a key of another prefix is refused."""
        ledger = open_ledger(key_prefix="acme_live")
        key = secret_of(ledger.create_key(alice, name="Shipping"))

        assert key.startswith("acme_live_")
        assert ledger.verify(key) is not None
        assert ledger.verify("kl_" + key[len("acme_live_") :]) is None


class TestAudit:
    def test_the_trail_records_every_event_in_order(
        self, ledger: Ledger, alice: Actor, admin: Actor, clock: Clock
    ) -> None:
        """The audit trail holds one entry per event, oldest first, with actor and key."""
        issued = ledger.create_key(alice, name="Shipping")
        ledger.regenerate_key(alice, issued.key_id, mode="grace")
        clock.advance(hours=13)
        ledger.expire_grace()
        ledger.revoke_key(alice, issued.key_id, reason="rotated")
        ledger.revoke_user_access(admin, "alice")
        ledger.restore_user_access(admin, "alice")

        entries = ledger.audit(account="acme")

        assert [e.action for e in entries] == [
            "KeyCreated",
            "KeyRegenerated",
            "GraceExpired",
            "KeyRevoked",
            "UserAccessRevoked",
            "UserAccessRestored",
        ]
        assert [e.position for e in entries] == sorted(e.position for e in entries)
        assert [e.actor for e in entries] == ["alice", "alice", None, "alice", "root", "root"]
        assert entries[0].key_name == "Shipping"
        assert all(len(e.chain) == 64 for e in entries)

    def test_filters_and_cursor(self, ledger: Ledger, alice: Actor, bob: Actor, clock: Clock) -> None:
        """Audit filters by key, actor, action and half-open time range, and pages by position."""
        first = ledger.create_key(alice, name="one")
        clock.advance(hours=1)
        middle = clock.now
        second = ledger.create_key(bob, name="two")
        clock.advance(hours=1)
        ledger.revoke_key(bob, first.key_id)

        by_key = ledger.audit(key_id=first.key_id)
        by_actor = ledger.audit(actor="bob")
        by_action = ledger.audit(action=["KeyRevoked"])
        in_range = ledger.audit(since=middle, until=clock.now)
        page_one = ledger.audit(limit=2)
        page_two = ledger.audit(limit=2, after=page_one[-1].position)

        assert [e.action for e in by_key] == ["KeyCreated", "KeyRevoked"]
        assert {e.actor for e in by_actor} == {"bob"}
        assert [e.key_id for e in by_action] == [first.key_id]
        assert [e.key_id for e in in_range] == [second.key_id]
        assert [e.position for e in page_one + page_two] == [e.position for e in ledger.audit()]

    def test_integrity_check_passes_on_an_untouched_ledger(self, ledger: Ledger, alice: Actor) -> None:
        """check_integrity() reports ok and counts every event of an untouched ledger."""
        issued = ledger.create_key(alice, name="Shipping")
        ledger.regenerate_key(alice, issued.key_id, mode="grace")

        report = ledger.check_integrity()

        assert report.ok
        assert report.events_checked == 2
        assert report.first_bad_position is None


class TestKeysPastedIntoText:
    @pytest.mark.parametrize("field", ["name", "purpose", "application"])
    def test_a_key_pasted_into_a_label_is_refused(self, ledger: Ledger, alice: Actor, field: str) -> None:
        """A label that contains a key of this ledger raises InvalidInput and records nothing."""
        key = secret_of(ledger.create_key(alice, name="Shipping"))
        labels = {"name": "copy", "purpose": "", "application": ""}
        labels[field] = f"see {key} here"

        with pytest.raises(InvalidInput) as raised:
            ledger.create_key(alice, **labels)

        assert raised.value.field == field
        assert key not in str(raised.value)
        assert actions(ledger) == ["KeyCreated"]

    def test_a_key_passed_as_user_id_or_reason_is_refused(
        self, ledger: Ledger, alice: Actor, admin: Actor
    ) -> None:
        """A key given as a user id or a revocation reason raises InvalidInput, recording nothing."""
        issued = ledger.create_key(alice, name="Shipping")
        key = secret_of(issued)

        with pytest.raises(InvalidInput):
            ledger.revoke_user_access(admin, key)
        with pytest.raises(InvalidInput):
            ledger.revoke_key(alice, issued.key_id, reason=f"leaked: {key}")

        assert actions(ledger) == ["KeyCreated"]
        assert ledger.verify(key) is not None


class TestSweeper:
    def test_the_sweeper_records_grace_expired_in_the_background(
        self, ledger: Ledger, alice: Actor, clock: Clock
    ) -> None:
        """start_sweeper() records GraceExpired for passed deadlines without the caller's help."""
        old = ledger.create_key(alice, name="Shipping")
        ledger.regenerate_key(alice, old.key_id, mode="grace")
        clock.advance(hours=12)

        ledger.start_sweeper(0.01)
        for _ in range(500):
            if ledger.audit(action="GraceExpired"):
                break
            threading.Event().wait(0.01)

        assert [e.action for e in ledger.audit(action="GraceExpired")] == ["GraceExpired"]

    def test_the_sweeper_stops_with_the_ledger(self, ledger: Ledger) -> None:
        """Closing the ledger stops its sweeper thread."""
        ledger.start_sweeper(0.01)

        ledger.close()

        assert not any(t.name == "keyledger-sweeper" and t.is_alive() for t in threading.enumerate())

    @pytest.mark.parametrize("interval", [0, -1, "1", True])
    def test_a_bad_interval_is_refused(self, ledger: Ledger, interval: object) -> None:
        """A sweeper interval that is not a positive number raises InvalidInput."""
        with pytest.raises(InvalidInput):
            ledger.start_sweeper(interval)  # type: ignore[arg-type]


class TestSettingsFromTheEnvironment:
    def test_prefix_and_grace_come_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, open_ledger: Callable[..., Ledger], alice: Actor, clock: Clock
    ) -> None:
        """KEYLEDGER_KEY_PREFIX and KEYLEDGER_GRACE_SECONDS set a ledger's defaults."""
        monkeypatch.setenv("KEYLEDGER_KEY_PREFIX", "acme_live")
        monkeypatch.setenv("KEYLEDGER_GRACE_SECONDS", "3600")
        ledger = open_ledger()

        old = ledger.create_key(alice, name="Shipping")
        new = ledger.regenerate_key(alice, old.key_id, mode="grace")

        assert secret_of(old).startswith("acme_live_")
        assert new.previous_valid_until == clock.now + timedelta(hours=1)

    def test_a_bad_grace_in_the_environment_is_refused(
        self, monkeypatch: pytest.MonkeyPatch, open_ledger: Callable[..., Ledger]
    ) -> None:
        """A KEYLEDGER_GRACE_SECONDS that is not a number raises InvalidInput naming it."""
        monkeypatch.setenv("KEYLEDGER_GRACE_SECONDS", "twelve hours")

        with pytest.raises(InvalidInput) as raised:
            open_ledger()

        assert raised.value.field == "KEYLEDGER_GRACE_SECONDS"


class TestBasicCredentials:
    def test_basic_credentials_of_a_known_key_are_refused_when_altered(
        self, ledger: Ledger, alice: Actor
    ) -> None:
        """A Basic credential verifies only as base64(key + ":"): a password, a changed
        padding character or a wrong prefix inside it is refused."""
        key = secret_of(ledger.create_key(alice, name="Shipping"))
        good = "Basic " + base64.b64encode(f"{key}:".encode()).decode()

        with_password = "Basic " + base64.b64encode(f"{key}:x".encode()).decode()
        other_prefix = "Basic " + base64.b64encode(f"xx{key[2:]}:".encode()).decode()
        bad_padding = good[:-1] + "!"

        assert ledger.verify(good) is not None
        assert ledger.verify(with_password) is None
        assert ledger.verify(other_prefix) is None
        assert ledger.verify(bad_padding) is None
