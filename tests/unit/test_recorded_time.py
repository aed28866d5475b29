"""Recorded time never goes back within an account: a command whose clock reads earlier
than the account's previous event (a clock stepped back, two machines whose clocks
differ) records its events at that previous event's time, and its grace deadline is
counted from there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from keyledger import Actor
from keyledger.domain import Keyring, NewSecret
from keyledger.domain.keys import digest, generate_key, hint

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
GRACE = timedelta(hours=12)


def secret() -> NewSecret:
    key = generate_key("kl")
    return NewSecret(digest=digest(key).hex(), hint=hint(key))


class TestKeyring:
    def test_an_event_is_never_recorded_before_the_accounts_previous_one(self, alice: Actor) -> None:
        """A command whose clock stepped back records its event at the previous event's time."""
        keyring = Keyring(Keyring.id_for("acme"), "acme", START)
        key_id = keyring.create_key(
            alice, name="Shipping", purpose="", application="", secret=secret(), now=START
        )

        keyring.revoke_key(alice, key_id, reason=None, now=START - timedelta(hours=1))

        first, second = keyring.collect_events()
        assert first.timestamp == START
        assert second.timestamp == START

    def test_a_grace_deadline_counts_from_the_recorded_time(self, alice: Actor) -> None:
        """A regeneration with a clock stepped back gets exactly the grace period from its recorded time."""
        keyring = Keyring(Keyring.id_for("acme"), "acme", START)
        key_id = keyring.create_key(
            alice, name="Shipping", purpose="", application="", secret=secret(), now=START
        )

        until = keyring.regenerate_key(
            alice, key_id, secret=secret(), grace=GRACE, now=START - timedelta(hours=3)
        )

        regenerated = keyring.collect_events()[-1]
        assert isinstance(regenerated, Keyring.KeyRegenerated)
        assert regenerated.timestamp == START
        assert until == regenerated.grace_until == START + GRACE

    def test_a_clock_that_moves_forward_is_recorded_as_it_reads(self, alice: Actor) -> None:
        """Without a step back, each event is recorded at the clock's time."""
        keyring = Keyring(Keyring.id_for("acme"), "acme", START)
        later = START + timedelta(seconds=1)
        key_id = keyring.create_key(
            alice, name="Shipping", purpose="", application="", secret=secret(), now=START
        )

        keyring.revoke_key(alice, key_id, reason=None, now=later)

        assert [event.timestamp for event in keyring.collect_events()] == [START, later]
