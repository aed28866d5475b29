"""Values callers pass in: actors, command arguments, ledger options and audit filters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from keyledger import Actor, InvalidInput, KeyLedgerError, Ledger, Permission


def assert_nothing_recorded(ledger: Ledger) -> None:
    """The ledger holds no event at all."""
    assert ledger.audit() == []
    assert ledger.position == 0


class TestActorValidation:
    @pytest.mark.parametrize(
        "user_id", ["", " ", "   \t ", "al\x00ice", "al\nice", "alice\x7f", "\x1b[31m", "a" * 201, 7, None]
    )
    def test_a_bad_user_id_is_refused(self, user_id: object) -> None:
        """An empty, blank, control-character, over-long or non-string user id raises InvalidInput."""
        with pytest.raises(InvalidInput) as raised:
            Actor(user_id=user_id, account="acme")  # type: ignore[arg-type]

        assert raised.value.field == "user_id"
        assert "user_id" in str(raised.value)

    @pytest.mark.parametrize("account", ["", "  ", "ac\x00me", "ac\nme", "a" * 201, 3])
    def test_a_bad_account_is_refused(self, account: object) -> None:
        """An empty, blank, control-character, over-long or non-string account raises InvalidInput."""
        with pytest.raises(InvalidInput) as raised:
            Actor(user_id="alice", account=account)  # type: ignore[arg-type]

        assert raised.value.field == "account"
        assert "account" in str(raised.value)

    def test_an_identifier_of_200_characters_is_accepted(self) -> None:
        """A user id and an account of exactly 200 characters are accepted."""
        actor = Actor(user_id="u" * 200, account="a" * 200)

        assert (len(actor.user_id), len(actor.account)) == (200, 200)

    def test_the_refusal_is_also_a_value_error(self) -> None:
        """InvalidInput is a ValueError and a KeyLedgerError, so either catches it."""
        with pytest.raises(ValueError, match="user_id") as raised:
            Actor(user_id="")

        assert isinstance(raised.value, KeyLedgerError)
        assert isinstance(raised.value, InvalidInput)

    def test_permissions_given_as_a_plain_string_are_refused(self) -> None:
        """Permissions given as one string (not a collection of them) raise InvalidInput."""
        with pytest.raises(InvalidInput) as raised:
            Actor(user_id="alice", permissions="integration")  # type: ignore[arg-type]

        assert raised.value.field == "permissions"
        assert "string" in raised.value.reason

    @pytest.mark.parametrize(
        "permissions", [{"admin"}, {"Integration"}, {Permission.INTEGRATION, "root"}, [1]]
    )
    def test_an_unknown_permission_is_refused(self, permissions: object) -> None:
        """A permission that is not one of the known ones raises InvalidInput naming the field."""
        with pytest.raises(InvalidInput) as raised:
            Actor(user_id="alice", permissions=permissions)  # type: ignore[arg-type]

        assert raised.value.field == "permissions"
        assert "integration" in raised.value.reason

    def test_permissions_that_are_not_a_collection_are_refused(self) -> None:
        """Permissions that cannot be iterated raise InvalidInput naming the field."""
        with pytest.raises(InvalidInput) as raised:
            Actor(user_id="alice", permissions=None)  # type: ignore[arg-type]

        assert raised.value.field == "permissions"


class TestActorPermissions:
    def test_permissions_accept_their_string_values(self) -> None:
        """Permissions given by their string values become Permission members."""
        actor = Actor(user_id="alice", permissions=["integration", "user_management"])  # type: ignore[list-item]

        assert actor.permissions == frozenset({Permission.INTEGRATION, Permission.USER_MANAGEMENT})
        assert all(type(p) is Permission for p in actor.permissions)

    def test_permissions_are_frozen(self) -> None:
        """An actor's permissions are a frozenset, whatever collection was given."""
        actor = Actor(user_id="alice", permissions=[Permission.INTEGRATION, Permission.INTEGRATION])  # type: ignore[arg-type]

        assert actor.permissions == frozenset({Permission.INTEGRATION})
        assert isinstance(actor.permissions, frozenset)

    def test_an_actor_has_no_permission_by_default(self) -> None:
        """An actor given no permissions can do nothing, in the default account."""
        actor = Actor(user_id="alice")

        assert actor.account == "default"
        assert not actor.can(Permission.INTEGRATION)
        assert not actor.can(Permission.USER_MANAGEMENT)

    def test_can_tells_which_permissions_an_actor_holds(self) -> None:
        """``can`` is true for a held permission and false for another."""
        actor = Actor(user_id="alice", permissions={"integration"})  # type: ignore[arg-type]

        assert actor.can(Permission.INTEGRATION)
        assert not actor.can(Permission.USER_MANAGEMENT)


class TestCreateKeyInputs:
    @pytest.mark.parametrize(
        ("field", "options"),
        [
            ("name", {"name": ""}),
            ("name", {"name": "   "}),
            ("name", {"name": "n" * 101}),
            ("name", {"name": "two\nlines"}),
            ("name", {"name": "nul\x00"}),
            ("name", {"name": 42}),
            ("name", {"name": None}),
            ("purpose", {"name": "ok", "purpose": "p" * 1001}),
            ("purpose", {"name": "ok", "purpose": "bell\x07"}),
            ("purpose", {"name": "ok", "purpose": b"bytes"}),
            ("application", {"name": "ok", "application": "a" * 101}),
            ("application", {"name": "ok", "application": "tab\there"}),
        ],
    )
    def test_a_bad_value_is_refused_and_nothing_is_recorded(
        self, ledger: Ledger, alice: Actor, field: str, options: dict[str, object]
    ) -> None:
        """A bad name, purpose or application raises InvalidInput naming the field, and records nothing."""
        with pytest.raises(InvalidInput) as raised:
            ledger.create_key(alice, **options)  # type: ignore[arg-type]

        assert raised.value.field == field
        assert field in str(raised.value)
        assert_nothing_recorded(ledger)
        assert ledger.keys("acme") == []

    def test_bad_input_is_refused_before_permission(self, ledger: Ledger) -> None:
        """An actor without permission and a bad name gets InvalidInput, not PermissionDenied."""
        nobody = Actor(user_id="nobody", account="acme")

        with pytest.raises(InvalidInput):
            ledger.create_key(nobody, name="")

        assert_nothing_recorded(ledger)

    def test_a_name_of_exactly_100_characters_is_accepted(self, ledger: Ledger, alice: Actor) -> None:
        """A name of exactly the maximum length is accepted as given."""
        name = "n" * 100

        issued = ledger.create_key(alice, name=name)

        view = ledger.key("acme", issued.key_id)
        assert view is not None
        assert view.name == name

    def test_a_purpose_of_exactly_1000_characters_with_newlines_is_accepted(
        self, ledger: Ledger, alice: Actor
    ) -> None:
        """A purpose of exactly the maximum length, with newlines and tabs, is accepted as given."""
        purpose = ("\tline of notes" + "x" * 85 + "\n") * 10
        assert len(purpose) == 1000

        issued = ledger.create_key(alice, name="Notes", purpose=purpose)

        view = ledger.key("acme", issued.key_id)
        assert view is not None
        assert view.purpose == purpose
        assert ledger.position == 1

    def test_an_application_of_exactly_100_characters_is_accepted(self, ledger: Ledger, alice: Actor) -> None:
        """An application label of exactly the maximum length is accepted."""
        issued = ledger.create_key(alice, name="App", application="a" * 100)

        view = ledger.key("acme", issued.key_id)
        assert view is not None
        assert view.application == "a" * 100


class TestRevokeKeyInputs:
    @pytest.mark.parametrize("reason", ["r" * 1001, "bell\x07", 5])
    def test_a_bad_reason_is_refused_and_the_key_still_verifies(
        self, ledger: Ledger, alice: Actor, reason: object
    ) -> None:
        """A reason too long, with control characters or not a string is refused; the key still works."""
        issued = ledger.create_key(alice, name="Shipping")
        secret = issued.secret.get_secret_value()

        with pytest.raises(InvalidInput) as raised:
            ledger.revoke_key(alice, issued.key_id, reason=reason)  # type: ignore[arg-type]

        assert raised.value.field == "reason"
        assert ledger.verify(secret) is not None
        assert ledger.position == 1

    def test_a_reason_of_exactly_1000_characters_is_accepted(self, ledger: Ledger, alice: Actor) -> None:
        """A reason of exactly the maximum length revokes the key."""
        issued = ledger.create_key(alice, name="Shipping")

        ledger.revoke_key(alice, issued.key_id, reason="r" * 1000)

        assert ledger.verify(issued.secret.get_secret_value()) is None


class TestLedgerOptions:
    @pytest.mark.parametrize(
        "grace_period",
        [
            timedelta(seconds=59),
            timedelta(minutes=1, microseconds=-1),
            timedelta(days=7, microseconds=1),
            timedelta(0),
            timedelta(hours=-12),
            3600,
            "12h",
        ],
    )
    def test_a_bad_grace_period_is_refused(
        self, open_ledger: Callable[..., Ledger], grace_period: object
    ) -> None:
        """A grace period outside 1 minute to 7 days, or not a timedelta, raises InvalidInput."""
        with pytest.raises(InvalidInput) as raised:
            open_ledger(grace_period=grace_period)

        assert raised.value.field == "grace_period"

    def test_no_grace_period_means_the_default(self, open_ledger: Callable[..., Ledger]) -> None:
        """grace_period=None takes KEYLEDGER_GRACE_SECONDS, else 12 hours."""
        ledger = open_ledger(grace_period=None)

        assert ledger.grace_period == timedelta(hours=12)

    @pytest.mark.parametrize("grace_period", [timedelta(minutes=1), timedelta(days=7)])
    def test_a_grace_period_at_either_bound_is_accepted(
        self,
        open_ledger: Callable[..., Ledger],
        clock: Callable[[], datetime],
        alice: Actor,
        grace_period: timedelta,
    ) -> None:
        """A grace period of exactly 1 minute or exactly 7 days is accepted and used."""
        ledger = open_ledger(grace_period=grace_period)
        issued = ledger.create_key(alice, name="Shipping")

        renewed = ledger.regenerate_key(alice, issued.key_id, mode="grace")

        assert ledger.grace_period == grace_period
        assert renewed.previous_valid_until == clock() + grace_period

    @pytest.mark.parametrize("key_prefix", ["", "KL", "kl-live", "a_b_c", "_kl", "x" * 17, 5])
    def test_a_bad_key_prefix_is_refused(
        self, open_ledger: Callable[..., Ledger], key_prefix: object
    ) -> None:
        """A key prefix outside the format raises InvalidInput naming key_prefix."""
        with pytest.raises(InvalidInput) as raised:
            open_ledger(key_prefix=key_prefix)

        assert raised.value.field == "key_prefix"

    def test_a_good_key_prefix_starts_every_key(
        self, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """A ledger opened with a prefix issues keys that start with it."""
        ledger = open_ledger(key_prefix="acme_live")

        issued = ledger.create_key(alice, name="Shipping")

        assert issued.secret.get_secret_value().startswith("acme_live_")
        assert ledger.verify(issued.secret.get_secret_value()) is not None

    @pytest.mark.parametrize(
        "url", ["mysql://host/db", "http://example.com", "sqlite://relative.db", "postgresql:///db"]
    )
    def test_a_bad_url_is_refused(self, url: str) -> None:
        """A URL of an unknown scheme, or a malformed one, raises InvalidInput naming the url."""
        with pytest.raises(InvalidInput) as raised:
            Ledger.open(url)

        assert raised.value.field == "url"


class TestAuditFilters:
    @pytest.mark.parametrize(
        ("field", "options"),
        [
            ("limit", {"limit": 0}),
            ("limit", {"limit": -1}),
            ("limit", {"limit": 10_001}),
            ("limit", {"limit": True}),
            ("limit", {"limit": 1.5}),
            ("action", {"action": "Nope"}),
            ("action", {"action": ["KeyCreated", "keycreated"]}),
            ("since", {"since": datetime(2026, 1, 1)}),
            ("until", {"until": datetime(2026, 1, 1)}),
            ("after", {"after": -1}),
        ],
    )
    def test_a_bad_filter_is_refused(
        self, ledger: Ledger, alice: Actor, field: str, options: dict[str, object]
    ) -> None:
        """A limit outside 1 to 10,000, an unknown action or a naive time raises InvalidInput."""
        ledger.create_key(alice, name="Shipping")

        with pytest.raises(InvalidInput) as raised:
            ledger.audit(**options)  # type: ignore[arg-type]

        assert raised.value.field == field

    @pytest.mark.parametrize("limit", [1, 10_000])
    def test_a_limit_at_either_bound_is_accepted(self, ledger: Ledger, alice: Actor, limit: int) -> None:
        """A limit of exactly 1 or exactly 10,000 is accepted."""
        ledger.create_key(alice, name="One")
        ledger.create_key(alice, name="Two")

        entries = ledger.audit(limit=limit)

        assert len(entries) == min(limit, 2)
