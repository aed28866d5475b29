"""Regenerating a key is a deliberate choice every time: Python callers name the mode,
as the CLI's --grace / --immediate do."""

from __future__ import annotations

import pytest

from keyledger import Actor, InvalidInput, Ledger


class TestRegenerationMode:
    def test_the_mode_is_a_required_keyword(self, ledger: Ledger, alice: Actor) -> None:
        """regenerate_key without a mode is a TypeError, and nothing is recorded."""
        issued = ledger.create_key(alice, name="Shipping")

        with pytest.raises(TypeError, match="mode"):
            ledger.regenerate_key(alice, issued.key_id)  # type: ignore[call-arg]

        assert [entry.action for entry in ledger.audit(account="acme")] == ["KeyCreated"]

    @pytest.mark.parametrize("mode", ["later", "GRACE", "", True])
    def test_an_unknown_mode_is_invalid_input(self, ledger: Ledger, alice: Actor, mode: object) -> None:
        """A mode other than 'grace' or 'immediate' is refused naming the argument."""
        issued = ledger.create_key(alice, name="Shipping")

        with pytest.raises(InvalidInput, match="invalid mode: must be 'grace' or 'immediate'"):
            ledger.regenerate_key(alice, issued.key_id, mode=mode)  # type: ignore[arg-type]

    def test_each_mode_does_what_it_says(self, ledger: Ledger, alice: Actor) -> None:
        """'grace' leaves the old secret working until its deadline; 'immediate' ends it."""
        issued = ledger.create_key(alice, name="Shipping")

        graced = ledger.regenerate_key(alice, issued.key_id, mode="grace")
        ended = ledger.regenerate_key(alice, issued.key_id, mode="immediate")

        assert graced.previous_valid_until is not None
        assert ended.previous_valid_until is None
        assert ledger.verify(issued.secret.get_secret_value()) is None
        assert ledger.verify(ended.secret.get_secret_value()) is not None
