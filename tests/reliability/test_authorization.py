"""Issue 6, point 9: every management call by an actor lacking the permission, by a
revoked user, or on another account's key is refused, and the ledger is left exactly as
it was: the same position, audit trail, catalogue and answers to every secret.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keyledger import (
    AccessRevoked,
    Actor,
    AuditEntry,
    KeyLedgerError,
    KeyNotFound,
    Ledger,
    Permission,
    PermissionDenied,
)

if TYPE_CHECKING:
    from tests.reliability.conftest import Tally

POINT = 9
INTEGRATION, USERS = Permission.INTEGRATION, Permission.USER_MANAGEMENT


@dataclass(frozen=True)
class Scene:
    """Keys in acme and globex, a revoked user and a revoked administrator."""

    ledger: Ledger
    alice_key: str
    globex_key: str
    secrets: list[str]


def set_scene(ledger: Ledger) -> Scene:
    root = Actor(user_id="root", account="acme", permissions={INTEGRATION, USERS})
    alice = Actor(user_id="alice", account="acme", permissions={INTEGRATION})
    issued = [ledger.create_key(alice, name="Alice's")]
    issued.append(ledger.regenerate_key(alice, issued[0].key_id, mode="grace"))
    for user in ("mallory", "deputy"):
        issued.append(
            ledger.create_key(Actor(user_id=user, account="acme", permissions={INTEGRATION}), name=user)
        )
        ledger.revoke_user_access(root, user)
    gina = Actor(user_id="gina", account="globex", permissions={INTEGRATION})
    issued.append(ledger.create_key(gina, name="Gina's"))
    return Scene(ledger, issued[0].key_id, issued[-1].key_id, [i.secret.get_secret_value() for i in issued])


Call = Callable[[Ledger, Actor, Scene], object]
CALLS: dict[str, tuple[Permission, Call]] = {
    "create_key": (INTEGRATION, lambda ledger, actor, scene: ledger.create_key(actor, name="intruder's")),
    "regenerate_key with grace": (
        INTEGRATION,
        lambda ledger, actor, scene: ledger.regenerate_key(actor, scene.alice_key, mode="grace"),
    ),
    "regenerate_key immediately": (
        INTEGRATION,
        lambda ledger, actor, scene: ledger.regenerate_key(actor, scene.alice_key, mode="immediate"),
    ),
    "revoke_key": (INTEGRATION, lambda ledger, actor, scene: ledger.revoke_key(actor, scene.alice_key)),
    "regenerate_key of globex": (
        INTEGRATION,
        lambda ledger, actor, scene: ledger.regenerate_key(actor, scene.globex_key, mode="immediate"),
    ),
    "revoke_key of globex": (
        INTEGRATION,
        lambda ledger, actor, scene: ledger.revoke_key(actor, scene.globex_key),
    ),
    "revoke_user_access": (USERS, lambda ledger, actor, scene: ledger.revoke_user_access(actor, "alice")),
    "restore_user_access": (USERS, lambda ledger, actor, scene: ledger.restore_user_access(actor, "mallory")),
}
ACTORS: dict[str, Actor] = {
    "no permission": Actor(user_id="carol", account="acme", permissions=()),
    "integration only": Actor(user_id="ivan", account="acme", permissions={INTEGRATION}),
    "user management only": Actor(user_id="uma", account="acme", permissions={USERS}),
    "revoked user": Actor(user_id="mallory", account="acme", permissions={INTEGRATION, USERS}),
    "revoked administrator": Actor(user_id="deputy", account="acme", permissions={INTEGRATION, USERS}),
    "another account's user": Actor(user_id="gina", account="globex", permissions={INTEGRATION, USERS}),
}


def expected_refusal(kind: str, call: str, needs: Permission) -> type[KeyLedgerError] | None:
    """The error the call must raise for this kind of actor (``None``: the call is allowed)."""
    actor = ACTORS[kind]
    if kind.startswith("revoked"):
        return AccessRevoked
    if not actor.can(needs):
        return PermissionDenied
    if call == "create_key" or needs is USERS:
        return None
    owner = "globex" if call.endswith("of globex") else "acme"
    return None if actor.account == owner else KeyNotFound  # not a key of the actor's account


def state(ledger: Ledger, scene: Scene, entries: Callable[[Ledger], list[AuditEntry]]) -> dict[str, Any]:
    """Everything a refused call must leave as it was."""
    ledger.sync()
    return {
        "position": ledger.position,
        "audit": [entry.model_dump(mode="json") for entry in entries(ledger)],
        "keys": [
            k.model_dump(mode="json", exclude={"last_used_at"})
            for a in ("acme", "globex")
            for k in ledger.keys(a)
        ],
        "verified": [ledger.verify(secret) for secret in scene.secrets],
    }


class TestRefusedManagementCalls:
    """Management calls by the wrong actor are refused with the right error and change nothing."""

    def test_every_refused_call_leaves_the_ledger_unchanged(
        self,
        store_url: str,
        open_ledger: Callable[..., Ledger],
        all_entries: Callable[[Ledger], list[AuditEntry]],
        tally: Tally,
    ) -> None:
        """Each call an actor may not make raises its refusal, and position, audit trail,
        catalogue and verification answers are identical before and after."""
        ledger = open_ledger(store_url)
        scene = set_scene(ledger)
        cases = [
            (kind, call, refusal)
            for kind in ACTORS
            for call, (needs, _) in CALLS.items()
            if (refusal := expected_refusal(kind, call, needs)) is not None
        ]
        wrong: list[str] = []

        for kind, call, refusal in cases:
            before = state(ledger, scene, all_entries)
            try:
                CALLS[call][1](ledger, ACTORS[kind], scene)
                raised: BaseException | None = None
            except Exception as error:
                raised = error
            after = state(ledger, scene, all_entries)
            if type(raised) is not refusal or after != before:
                wrong.append(f"{kind} / {call}: {raised!r}, unchanged: {after == before}")

        store = store_url.split(":")[0]
        tally(
            POINT,
            "refused management calls leave the ledger unchanged",
            store,
            len(cases),
            len(cases) - len(wrong),
        )
        assert len(cases) >= 25
        assert wrong == []
