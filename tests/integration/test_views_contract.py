"""One contract for every view store: a ledger on memory, SQLite and PostgreSQL answers
the catalogue, the audit trail and key histories the same way after the same lifecycle.

Every test reads the scripted lifecycle of :func:`run_script`, run once per module on a
new, empty store of each kind, and checks one question against hand-derived answers. The
last class runs the script on all three stores side by side and compares every answer,
with only the random values (key ids, secrets' digests and hints, chains) renamed in
order of first appearance.

The script's events, and the positions they take on a new store of any kind::

    t0   1 KeyCreated         Shipping  alice          acme
    t0   2 KeyCreated         Billing   alice          acme
    t0   3 KeyCreated         Bob sync  bob            acme
    t0   4 KeyCreated         Bob spare bob            acme
    t0   5 KeyCreated         Reports   alice          acme
    t0   6 KeyCreated         CRM       gina           globex
    t1   7 KeyRegenerated     Shipping  alice  grace, until g = t1 + 12 h
    t1   8 KeyRegenerated     Billing   alice  immediate
    g    9 GraceExpired       Shipping  (none) recorded at t2 = g + 1 min
    t3  10 KeyRegenerated     Bob sync  bob    grace, until t3 + 12 h
    t3  11 KeyRevoked         Reports   alice  reason "leaked"
    t4  12 UserAccessRevoked  bob       root   removes Bob sync and Bob spare
    t5  13 UserAccessRestored bob       root
    t6  14 KeyCreated         Bob new   bob            acme
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from keyledger import Actor, AuditEntry, GraceSecret, InvalidInput, KeyView, Ledger, Permission
from keyledger.testing import ManualClock

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
GRACE = timedelta(hours=12)
MICROSECOND = timedelta(microseconds=1)
USER_REMOVED = "creator's access revoked"
ALL_POSITIONS = list(range(1, 15))
POSTGRES_URL = os.environ.get("KEYLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Story:
    """What the scripted lifecycle did: key ids by name, secrets by name, and its instants."""

    ids: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    times: dict[str, datetime] = field(default_factory=dict)
    expired: int = 0
    bob_sync_in_grace: KeyView | None = None
    removed: list[str] = field(default_factory=list)


def gina_of_globex() -> Actor:
    return Actor(user_id="gina", account="globex", permissions={Permission.INTEGRATION})


def run_script(ledger: Ledger, clock: ManualClock, alice: Actor, bob: Actor, admin: Actor) -> Story:
    """The lifecycle of the module docstring, on ``ledger`` whose clock is ``clock``."""
    story = Story()

    def keep(label: str, issued: Any) -> None:
        story.ids.setdefault(label, issued.key_id)
        story.secrets[f"{label} #{sum(s.startswith(label) for s in story.secrets)}"] = (
            issued.secret.get_secret_value()
        )

    story.times["t0"] = clock.now
    keep("Shipping", ledger.create_key(alice, name="Shipping", purpose="labels", application="ShipStation"))
    keep("Billing", ledger.create_key(alice, name="Billing", application="Stripe"))
    keep("Bob sync", ledger.create_key(bob, name="Bob sync", purpose="nightly"))
    keep("Bob spare", ledger.create_key(bob, name="Bob spare"))
    keep("Reports", ledger.create_key(alice, name="Reports"))
    keep("CRM", ledger.create_key(gina_of_globex(), name="CRM", application="Salesforce"))

    story.times["t1"] = clock.advance(minutes=5)
    story.times["g"] = story.times["t1"] + GRACE
    keep("Shipping", ledger.regenerate_key(alice, story.ids["Shipping"], mode="grace"))
    keep("Billing", ledger.regenerate_key(alice, story.ids["Billing"], mode="immediate"))

    story.times["t2"] = clock.advance(GRACE + timedelta(minutes=1))
    story.expired = ledger.expire_grace()

    story.times["t3"] = clock.advance(minutes=1)
    keep("Bob sync", ledger.regenerate_key(bob, story.ids["Bob sync"], mode="grace"))
    story.bob_sync_in_grace = ledger.key("acme", story.ids["Bob sync"])
    ledger.revoke_key(alice, story.ids["Reports"], reason="leaked")

    story.times["t4"] = clock.advance(minutes=1)
    story.removed = ledger.revoke_user_access(admin, "bob")

    story.times["t5"] = clock.advance(minutes=1)
    ledger.restore_user_access(admin, "bob")

    story.times["t6"] = clock.advance(minutes=1)
    keep("Bob new", ledger.create_key(bob, name="Bob new"))
    return story


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgresql"])
def scripted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Ledger, Story]]:
    """A ledger on a new store of each kind after the scripted lifecycle, shared by the
    tests of this module (they only read it)."""
    with ExitStack() as stack:
        if request.param == "memory":
            url = "memory://"
        elif request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('contract') / 'keyledger.db'}"
        else:
            url = stack.enter_context(postgres_schema())
        clock = ManualClock(START)
        ledger = stack.enter_context(Ledger.open(url, clock=clock))
        yield ledger, run_script(ledger, clock, *actors())


@contextmanager
def postgres_schema() -> Iterator[str]:
    """The URL of a new PostgreSQL schema, dropped afterwards; skips as ``postgres_url``
    does where no server answers (fails where ``KEYLEDGER_REQUIRE_POSTGRES=1``)."""
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        if os.environ.get("KEYLEDGER_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but unreachable: {error}")
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_URL}")
    schema = f"kl_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
        try:
            yield f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]


def actors() -> tuple[Actor, Actor, Actor]:
    """Alice and Bob (integration) and root (integration and user management), of acme."""
    integration = {Permission.INTEGRATION}
    return (
        Actor(user_id="alice", account="acme", permissions=integration),
        Actor(user_id="bob", account="acme", permissions=integration),
        Actor(user_id="root", account="acme", permissions={*integration, Permission.USER_MANAGEMENT}),
    )


def positions(entries: list[AuditEntry]) -> list[int]:
    return [entry.position for entry in entries]


class TestTheScriptRan:
    """The scripted lifecycle records the fourteen events the contract is written against."""

    def test_records_the_scripted_events_at_positions_one_to_fourteen(
        self, scripted: tuple[Ledger, Story]
    ) -> None:
        """A new store of any kind numbers the script's events 1 to 14, in order."""
        ledger, story = scripted

        audit = ledger.audit(limit=10_000)

        assert positions(audit) == ALL_POSITIONS
        assert [entry.action for entry in audit] == [
            *["KeyCreated"] * 6,
            "KeyRegenerated",
            "KeyRegenerated",
            "GraceExpired",
            "KeyRegenerated",
            "KeyRevoked",
            "UserAccessRevoked",
            "UserAccessRestored",
            "KeyCreated",
        ]
        assert [entry.previous_position for entry in audit] == list(range(14))
        assert story.expired == 1
        assert sorted(story.removed) == sorted([story.ids["Bob sync"], story.ids["Bob spare"]])
        assert ledger.position == 14


class TestAuditChains:
    """What the integrity check compares the events with: the trail's chain by position."""

    @pytest.mark.parametrize(("after", "upto"), [(0, 14), (3, 9), (13, 14), (14, 20), (5, 5)])
    def test_gives_the_chain_of_each_entry_in_the_range(
        self, scripted: tuple[Ledger, Story], after: int, upto: int
    ) -> None:
        """``audit_chains(after, upto)`` holds exactly the entries in ``(after, upto]``."""
        ledger, _ = scripted
        store: Any = ledger._connection.views  # the port itself: the Ledger does not expose it

        chains = store.audit_chains(after, upto)

        expected = {e.position: e.chain for e in ledger.audit(limit=10_000) if after < e.position <= upto}
        assert chains == expected


class TestCatalogue:
    """keys() and key() list every key in creation order with its status and secrets."""

    def test_lists_an_accounts_keys_in_creation_order(self, scripted: tuple[Ledger, Story]) -> None:
        """keys() lists the account's keys in the order of their creation positions."""
        ledger, story = scripted

        keys = ledger.keys("acme")

        names = ["Shipping", "Billing", "Bob sync", "Bob spare", "Reports", "Bob new"]
        assert [k.name for k in keys] == names
        assert [k.key_id for k in keys] == [story.ids[name] for name in names]
        assert [k.created_position for k in keys] == [1, 2, 3, 4, 5, 14]
        assert [k.created_by for k in keys] == ["alice", "alice", "bob", "bob", "alice", "bob"]

    def test_shows_each_keys_status_and_reason(self, scripted: tuple[Ledger, Story]) -> None:
        """Revoked keys show when and why; removed keys show their creator's removal."""
        ledger, story = scripted
        t3, t4 = story.times["t3"], story.times["t4"]

        keys = ledger.keys("acme")

        assert [(k.status, k.revoked_at, k.revoked_reason) for k in keys] == [
            ("active", None, None),
            ("active", None, None),
            ("revoked", t4, USER_REMOVED),
            ("revoked", t4, USER_REMOVED),
            ("revoked", t3, "leaked"),
            ("active", None, None),
        ]
        assert [k.hint is None for k in keys] == [False, False, True, True, True, False]

    def test_records_labels_times_and_regenerations(self, scripted: tuple[Ledger, Story]) -> None:
        """Each key keeps its labels and creation time; a regenerated key shows when."""
        ledger, story = scripted
        t0, t1, t3, t6 = (story.times[t] for t in ("t0", "t1", "t3", "t6"))

        keys = ledger.keys("acme")

        assert [(k.purpose, k.application) for k in keys[:3]] == [
            ("labels", "ShipStation"),
            ("", "Stripe"),
            ("nightly", ""),
        ]
        assert [k.created_at for k in keys] == [t0, t0, t0, t0, t0, t6]
        assert [k.regenerated_at for k in keys] == [t1, t1, t3, None, None, None]
        assert all(k.account == "acme" for k in keys)

    def test_lists_a_secret_in_grace_until_it_ends(self, scripted: tuple[Ledger, Story]) -> None:
        """A secret in grace is listed with its deadline, and disappears once ended."""
        ledger, story = scripted
        in_grace = story.bob_sync_in_grace

        keys = ledger.keys("acme")

        assert in_grace is not None
        assert in_grace.grace == (
            GraceSecret(hint=in_grace.grace[0].hint, grace_until=story.times["t3"] + GRACE),
        )
        assert in_grace.grace[0].hint != in_grace.hint
        assert [k.grace for k in keys] == [()] * 6

    def test_keeps_accounts_apart(self, scripted: tuple[Ledger, Story]) -> None:
        """Another account's keys are listed only under that account."""
        ledger, story = scripted

        globex = ledger.keys("globex")

        assert [(k.key_id, k.name, k.created_position) for k in globex] == [(story.ids["CRM"], "CRM", 6)]
        assert ledger.keys("initech") == []
        assert ledger.key("acme", story.ids["CRM"]) is None

    def test_key_returns_the_same_view_as_keys(self, scripted: tuple[Ledger, Story]) -> None:
        """key() returns each key exactly as keys() lists it, and None for an unknown key."""
        ledger, _ = scripted
        listed = ledger.keys("acme")

        one_by_one = [ledger.key("acme", view.key_id) for view in listed]

        assert one_by_one == listed
        assert ledger.key("acme", "key_0000000000000000") is None


class TestValidKeys:
    """The valid-key table accepts exactly the secrets the lifecycle left working."""

    def test_verifies_exactly_the_working_secrets(self, scripted: tuple[Ledger, Story]) -> None:
        """Only the current secrets of active keys verify once every grace has ended."""
        ledger, story = scripted

        working = {label: ledger.verify(secret) is not None for label, secret in story.secrets.items()}

        assert working == {
            "Shipping #0": False,
            "Billing #0": False,
            "Bob sync #0": False,
            "Bob spare #0": False,
            "Reports #0": False,
            "CRM #0": True,
            "Shipping #1": True,
            "Billing #1": True,
            "Bob sync #1": False,
            "Bob new #0": True,
        }

    def test_a_verified_secret_names_its_key(self, scripted: tuple[Ledger, Story]) -> None:
        """A working secret verifies as its account, key id and name, with no deadline."""
        ledger, story = scripted

        principal = ledger.verify(story.secrets["CRM #0"])

        assert principal is not None
        assert (principal.account, principal.key_id, principal.name) == ("globex", story.ids["CRM"], "CRM")
        assert principal.grace_until is None


class TestAuditFilters:
    """audit() answers each reviewer's filter with exactly the matching entries, oldest first."""

    def test_filters_by_account(self, scripted: tuple[Ledger, Story]) -> None:
        """An account filter returns that account's entries only."""
        ledger, _ = scripted

        acme, globex, none = (ledger.audit(account=a) for a in ("acme", "globex", "initech"))

        assert positions(acme) == [p for p in ALL_POSITIONS if p != 6]
        assert positions(globex) == [6]
        assert none == []

    def test_filters_by_key_including_the_user_removal_that_ended_it(
        self, scripted: tuple[Ledger, Story]
    ) -> None:
        """A key filter returns the key's own events and the user removal that revoked it."""
        ledger, story = scripted

        by_key = {name: ledger.audit(key_id=story.ids[name]) for name in story.ids}

        assert {name: positions(entries) for name, entries in by_key.items()} == {
            "Shipping": [1, 7, 9],
            "Billing": [2, 8],
            "Bob sync": [3, 10, 12],
            "Bob spare": [4, 12],
            "Reports": [5, 11],
            "CRM": [6],
            "Bob new": [14],
        }
        removal = by_key["Bob spare"][-1]
        assert removal.action == "UserAccessRevoked"
        assert removal.key_id is None
        assert sorted(removal.details["removed_key_ids"]) == sorted(story.removed)

    def test_filters_by_key_within_an_account(self, scripted: tuple[Ledger, Story]) -> None:
        """A key filter combined with another account's filter matches nothing."""
        ledger, story = scripted

        same = ledger.audit(account="acme", key_id=story.ids["Bob spare"])
        other = ledger.audit(account="globex", key_id=story.ids["Bob spare"])

        assert positions(same) == [4, 12]
        assert other == []

    def test_filters_by_actor(self, scripted: tuple[Ledger, Story]) -> None:
        """An actor filter returns the commands that user ran (GraceExpired has no actor)."""
        ledger, _ = scripted

        by_actor = {actor: positions(ledger.audit(actor=actor)) for actor in ("alice", "bob", "root", "gina")}

        assert by_actor == {
            "alice": [1, 2, 5, 7, 8, 11],
            "bob": [3, 4, 10, 14],
            "root": [12, 13],
            "gina": [6],
        }
        assert ledger.audit(action="GraceExpired")[0].actor is None

    def test_filters_by_one_action_name(self, scripted: tuple[Ledger, Story]) -> None:
        """An action given as a string returns the entries of that action."""
        ledger, _ = scripted

        created = ledger.audit(action="KeyCreated")
        expired = ledger.audit(action="GraceExpired")

        assert positions(created) == [1, 2, 3, 4, 5, 6, 14]
        assert positions(expired) == [9]

    def test_filters_by_several_action_names(self, scripted: tuple[Ledger, Story]) -> None:
        """An action given as a list or tuple returns the entries of any of those actions."""
        ledger, _ = scripted

        ended = ledger.audit(action=["KeyRevoked", "UserAccessRevoked"])
        access = ledger.audit(action=("UserAccessRevoked", "UserAccessRestored"))

        assert positions(ended) == [11, 12]
        assert positions(access) == [12, 13]

    def test_refuses_an_unknown_action(self, scripted: tuple[Ledger, Story]) -> None:
        """An action name that no event has is refused rather than matching nothing."""
        ledger, _ = scripted

        with pytest.raises(InvalidInput):
            ledger.audit(action=["KeyRevoked", "KeyDisabled"])

    def test_since_is_inclusive_and_until_exclusive_on_occurred_at(
        self, scripted: tuple[Ledger, Story]
    ) -> None:
        """The time range is [since, until) on the effective time."""
        ledger, story = scripted
        t1, t3, t4 = story.times["t1"], story.times["t3"], story.times["t4"]

        from_t1 = ledger.audit(since=t1)
        before_t3 = ledger.audit(until=t3)
        t3_only = ledger.audit(since=t3, until=t4)
        just_after_t1 = ledger.audit(since=t1 + MICROSECOND)

        assert positions(from_t1) == list(range(7, 15))
        assert positions(before_t3) == list(range(1, 10))
        assert positions(t3_only) == [10, 11]
        assert positions(just_after_t1) == list(range(9, 15))

    def test_a_late_grace_expiry_falls_in_the_range_of_its_deadline(
        self, scripted: tuple[Ledger, Story]
    ) -> None:
        """GraceExpired is found at its deadline, not at the later time it was recorded."""
        ledger, story = scripted
        g, t2, t3 = story.times["g"], story.times["t2"], story.times["t3"]

        at_deadline = ledger.audit(since=g, until=g + MICROSECOND)
        after_deadline = ledger.audit(since=g + MICROSECOND, until=t3)
        when_recorded = ledger.audit(since=t2, until=t3)

        assert positions(at_deadline) == [9]
        assert at_deadline[0].occurred_at == g
        assert at_deadline[0].recorded_at == t2
        assert after_deadline == []
        assert when_recorded == []

    def test_limit_and_after_page_through_the_trail(self, scripted: tuple[Ledger, Story]) -> None:
        """limit caps a page and after starts it past a position."""
        ledger, _ = scripted

        first = ledger.audit(limit=3)
        middle = ledger.audit(limit=2, after=5)
        last = ledger.audit(after=12)
        past_the_end = ledger.audit(after=14)

        assert positions(first) == [1, 2, 3]
        assert positions(middle) == [6, 7]
        assert positions(last) == [13, 14]
        assert past_the_end == []

    def test_after_and_limit_apply_after_the_other_filters(self, scripted: tuple[Ledger, Story]) -> None:
        """A filtered page counts only matching entries, past the cursor."""
        ledger, _ = scripted

        page = ledger.audit(account="acme", actor="alice", limit=2, after=2)

        assert positions(page) == [5, 7]

    def test_filters_combine(self, scripted: tuple[Ledger, Story]) -> None:
        """Several filters together return the entries that match all of them."""
        ledger, story = scripted

        found = ledger.audit(
            account="acme", actor="bob", action=["KeyCreated", "KeyRegenerated"], since=story.times["t1"]
        )

        assert positions(found) == [10, 14]


class TestAuditLimits:
    """audit() takes up to 10,000 entries a page and refuses more."""

    def test_accepts_the_documented_maximum(self, scripted: tuple[Ledger, Story]) -> None:
        """A limit of 10,000 is accepted."""
        ledger, _ = scripted

        everything = ledger.audit(limit=10_000)

        assert positions(everything) == ALL_POSITIONS

    @pytest.mark.parametrize("limit", [10_001, 0, -1])
    def test_refuses_a_limit_out_of_range(self, scripted: tuple[Ledger, Story], limit: int) -> None:
        """A limit above 10,000 or below 1 is refused."""
        ledger, _ = scripted

        with pytest.raises(InvalidInput) as raised:
            ledger.audit(limit=limit)

        assert raised.value.field == "limit"

    def test_defaults_to_a_hundred(self, ledger: Ledger, alice: Actor) -> None:
        """Without a limit, a page holds at most 100 entries (the default is the Ledger's,
        so one store shows it; every store honours an explicit limit above)."""
        for turn in range(101):
            ledger.create_key(alice, name=f"Key {turn}")

        page = ledger.audit()

        assert positions(page) == list(range(1, 101))


class TestHistory:
    """history() returns every entry that touched one key."""

    def test_returns_the_keys_entries_including_its_removal(self, scripted: tuple[Ledger, Story]) -> None:
        """A removed key's history ends with the user removal that revoked it."""
        ledger, story = scripted

        history = ledger.history("acme", story.ids["Bob sync"])

        assert positions(history) == [3, 10, 12]
        assert [e.action for e in history] == ["KeyCreated", "KeyRegenerated", "UserAccessRevoked"]
        assert history == ledger.audit(account="acme", key_id=story.ids["Bob sync"])

    def test_every_keys_history_matches_the_key_filter(self, scripted: tuple[Ledger, Story]) -> None:
        """Each key's history equals the audit entries found by its key id."""
        ledger, story = scripted

        histories = {name: ledger.history("acme", key_id) for name, key_id in story.ids.items()}

        assert {name: positions(h) for name, h in histories.items()} == {
            "Shipping": [1, 7, 9],
            "Billing": [2, 8],
            "Bob sync": [3, 10, 12],
            "Bob spare": [4, 12],
            "Reports": [5, 11],
            "CRM": [],
            "Bob new": [14],
        }
        assert positions(ledger.history("globex", story.ids["CRM"])) == [6]

    def test_names_the_key_on_each_entry(self, scripted: tuple[Ledger, Story]) -> None:
        """Entries about one key carry its name; a user removal names no single key."""
        ledger, story = scripted

        history = ledger.history("acme", story.ids["Shipping"])

        assert [(e.key_id, e.key_name) for e in history] == [(story.ids["Shipping"], "Shipping")] * 3


RANDOM_VALUES = (
    ("key", re.compile(r"key_[0-9A-Za-z]{16}")),
    ("hex", re.compile(r"[0-9a-f]{64}")),
    ("hint", re.compile(r"kl_\.\.\.[0-9A-Za-z]{4}")),
)


class Renamer:
    """Renames random values (key ids, digests, chains, hints) in order of first appearance."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        if isinstance(value, str):
            for kind, pattern in RANDOM_VALUES:
                if pattern.fullmatch(value):
                    return self.names.setdefault(value, f"<{kind} {len(self.names)}>")
        return value


def everything_asked(ledger: Ledger, story: Story) -> dict[str, Any]:
    """Every answer of the contract, as JSON values with random values renamed."""
    rename = Renamer()
    ids, times = story.ids, story.times

    def dump(models: Any) -> Any:
        if models is None:
            return None
        if isinstance(models, list):
            return [model.model_dump(mode="json") for model in models]
        return models.model_dump(mode="json")

    principals: dict[str, list[str] | None] = {}
    for label, secret in story.secrets.items():
        p = ledger.verify(secret)
        principals[label] = None if p is None else [p.account, p.key_id, p.name, str(p.grace_until)]
    answers = {
        "ids": list(ids.values()),
        "keys": {account: dump(ledger.keys(account)) for account in ("acme", "globex")},
        "key": {name: dump(ledger.key("acme", key_id)) for name, key_id in ids.items()},
        "in grace": dump(story.bob_sync_in_grace),
        "verify": principals,
        "audit": dump(ledger.audit(limit=10_000)),
        "by account": dump(ledger.audit(account="acme")),
        "by key": {name: dump(ledger.audit(key_id=key_id)) for name, key_id in ids.items()},
        "by actor": {actor: dump(ledger.audit(actor=actor)) for actor in ("alice", "bob", "root", "gina")},
        "by action": dump(ledger.audit(action="GraceExpired")),
        "by actions": dump(ledger.audit(action=["KeyRevoked", "UserAccessRevoked"])),
        "by time": dump(ledger.audit(since=times["g"], until=times["t4"])),
        "page": dump(ledger.audit(limit=4, after=3)),
        "history": {name: dump(ledger.history("acme", key_id)) for name, key_id in ids.items()},
        "position": ledger.position,
    }
    return rename(answers)  # type: ignore[no-any-return]


class TestEveryStoreAnswersAlike:
    """Memory, SQLite and PostgreSQL give identical answers after the same lifecycle."""

    def test_the_three_stores_answer_identically(self, sqlite_url: str, postgres_url: str) -> None:
        """Every catalogue, audit and history answer, positions included, is the same on all three."""
        answers = {}
        for url in ("memory://", sqlite_url, postgres_url):
            clock = ManualClock(START)
            with Ledger.open(url, clock=clock) as ledger:
                answers[url.split(":")[0]] = everything_asked(ledger, run_script(ledger, clock, *actors()))

        assert answers["sqlite"] == answers["memory"]
        assert answers["postgresql"] == answers["memory"]
        assert [entry["position"] for entry in answers["memory"]["audit"]] == ALL_POSITIONS
        assert answers["memory"]["keys"]["acme"][0]["key_id"] == "<key 0>"

    def test_the_renaming_tells_different_answers_apart(self) -> None:
        """Renaming keeps distinct random values distinct, so a changed answer still shows."""
        rename = Renamer()

        renamed = rename({"a": ["key_" + "a" * 16, "key_" + "b" * 16, "key_" + "a" * 16], "b": "f" * 64})

        assert renamed == {"a": ["<key 0>", "<key 1>", "<key 0>"], "b": "<hex 2>"}
