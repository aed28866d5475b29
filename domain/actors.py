"""Who acts: an :class:`Actor` is a user of one account with a set of permissions,
supplied by the host service that embeds the ledger."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from keyledger.domain.errors import InvalidInput
from keyledger.domain.inputs import check_identifier

DEFAULT_ACCOUNT = "default"


class Permission(StrEnum):
    """What an actor may do in its account."""

    INTEGRATION = "integration"
    """Create, regenerate and revoke API keys."""
    USER_MANAGEMENT = "user_management"
    """Revoke and restore a user's access (and with it, their keys)."""


@dataclass(frozen=True, slots=True, init=False)
class Actor:
    """A user of one account, acting with the given permissions.

    Values are checked on construction; a bad one raises :class:`InvalidInput`.
    """

    user_id: str
    account: str
    permissions: frozenset[Permission]

    def __init__(
        self,
        user_id: str,
        account: str = DEFAULT_ACCOUNT,
        permissions: Iterable[Permission | str] = (),
    ) -> None:
        object.__setattr__(self, "user_id", check_identifier("user_id", user_id))
        object.__setattr__(self, "account", check_identifier("account", account))
        object.__setattr__(self, "permissions", _permissions(permissions))

    def can(self, permission: Permission) -> bool:
        """Whether this actor holds ``permission``."""
        return permission in self.permissions


def _permissions(values: Iterable[Permission | str]) -> frozenset[Permission]:
    if isinstance(values, str):
        raise InvalidInput("permissions", "must be a collection of permissions, not a string")
    # Raised outside the except clause, so the refused value (which may be a pasted
    # secret) is not kept as the error's suppressed context.
    try:
        return frozenset(Permission(value) for value in values)
    except (TypeError, ValueError):
        pass
    known = ", ".join(p.value for p in Permission)
    raise InvalidInput("permissions", f"must each be one of: {known}")
