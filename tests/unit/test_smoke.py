"""The quickstart of the README works as written."""

from __future__ import annotations

from keyledger import Actor, Ledger, Permission


def test_a_created_key_verifies_in_memory() -> None:
    """A key created in a memory ledger verifies with its secret."""
    with Ledger.open("memory://") as ledger:
        alice = Actor(user_id="alice", account="acme", permissions={Permission.INTEGRATION})

        issued = ledger.create_key(alice, name="Shipping", purpose="labels", application="ShipStation")

        principal = ledger.verify(issued.secret.get_secret_value())
        assert principal is not None
        assert (principal.account, principal.key_id, principal.name) == ("acme", issued.key_id, "Shipping")
