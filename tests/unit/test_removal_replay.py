"""A recorded user removal replays as recorded: the views end exactly the keys and secrets
its event lists, whatever the cascade's rule was when it was recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from keyledger.adapters.driven.memory_views import MemoryViews
from keyledger.domain import Actor, Keyring, NewSecret, Permission
from keyledger.domain.chain import GENESIS
from keyledger.domain.keys import digest, generate_key, hint
from keyledger.projections.project import project
from keyledger.projections.recorded import read_recorded

ACCOUNT = "acme"
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ALICE = Actor(user_id="alice", account=ACCOUNT, permissions={Permission.INTEGRATION})
BOB = Actor(user_id="bob", account=ACCOUNT, permissions={Permission.INTEGRATION})
ADMIN = Actor(user_id="root", account=ACCOUNT, permissions=set(Permission))


def secret() -> NewSecret:
    """What the Keyring learns of a fresh key."""
    key = generate_key("kl")
    return NewSecret(digest=digest(key).hex(), hint=hint(key))


def minutes(n: int) -> datetime:
    """``n`` minutes after the start of every test."""
    return NOW + timedelta(minutes=n)


def projected(events: list[Keyring.Event]) -> MemoryViews:
    """The views after following ``events`` from an empty ledger."""
    recorded = [
        read_recorded(event.stored_state(), event.TOPIC, position, event.originator_version, position - 1)
        for position, event in enumerate(events, start=1)
    ]
    views = MemoryViews()
    assert views.write(recorded, project, after=0)
    return views


def alices_key_bob_holds_and_bobs_own() -> tuple[Keyring, str, str]:
    """Alice's key that Bob regenerated (he holds its secret) and a key Bob created."""
    keyring = Keyring(Keyring.id_for(ACCOUNT), ACCOUNT, NOW)
    received = keyring.create_key(
        ALICE, name="A", purpose="", application="", secret=secret(), now=minutes(0)
    )
    keyring.regenerate_key(BOB, received, secret=secret(), grace=timedelta(hours=12), now=minutes(1))
    created = keyring.create_key(BOB, name="B", purpose="", application="", secret=secret(), now=minutes(2))
    return keyring, received, created


class TestARecordedRemovalReplaysAsRecorded:
    def test_the_views_end_only_the_keys_and_secrets_a_first_release_removal_lists(self) -> None:
        """A removal recorded under the first release's rule ends only the keys it lists in every view."""
        keyring, received, created = alices_key_bob_holds_and_bobs_own()
        still_working = keyring.keys[received].digests()
        ended = keyring.keys[created].digests()
        events = keyring.collect_events()
        events.append(
            Keyring.UserAccessRevoked(
                originator_id=keyring.id,
                originator_version=keyring.version + 1,
                timestamp=minutes(3),
                account=ACCOUNT,
                actor="root",
                chain=GENESIS,
                user_id="bob",
                removed_key_ids=(created,),
                ended_digests=tuple(ended),
            )
        )

        views = projected(events)

        assert views.rows[ACCOUNT][created].revoked_at == minutes(3)
        assert views.rows[ACCOUNT][received].revoked_at is None
        assert [views.index.lookup(bytes.fromhex(d)) is None for d in ended] == [True]
        assert [views.index.lookup(bytes.fromhex(d)) is not None for d in still_working] == [True, True]

    def test_the_views_end_every_key_a_removal_under_the_new_rule_lists(self) -> None:
        """A removal listing a key the user received a secret of ends it and its secrets in every view."""
        keyring, received, created = alices_key_bob_holds_and_bobs_own()
        every_secret = [*keyring.keys[received].digests(), *keyring.keys[created].digests()]

        keyring.revoke_user_access(ADMIN, "bob", now=minutes(3))
        views = projected(keyring.collect_events())

        assert views.rows[ACCOUNT][created].revoked_at == minutes(3)
        assert views.rows[ACCOUNT][received].revoked_at == minutes(3)
        assert len(every_secret) == 3
        assert [views.index.lookup(bytes.fromhex(d)) for d in every_secret] == [None, None, None]
        [removal] = [e for e in views.entries if e.action == "UserAccessRevoked"]
        assert removal.details["removed_key_ids"] == [received, created]
