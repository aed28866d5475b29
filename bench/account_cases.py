"""Commands on one account holding 10,000 keys against the same commands on an account
holding 10, in the same SQLite file, alternating run by run."""

from __future__ import annotations

from bench.commands import timed_commands
from bench.harness import Row, compared, paired
from bench.workspace import BIG, SMALL, Workspace
from keyledger import Ledger


def account_rows(space: Workspace) -> list[Row]:
    scale = space.scale
    store = space.accounts()
    users = {BIG: f"{BIG}-u0", SMALL: f"{SMALL}-u0"}
    with Ledger.open(store.url) as ledger:
        timed_commands(ledger, SMALL, 3, users[SMALL])
        small, big = paired(
            lambda: timed_commands(ledger, SMALL, scale.account_commands, users[SMALL]),
            lambda: timed_commands(ledger, BIG, scale.account_commands, users[BIG]),
            scale.heavy_runs,
        )
    return [
        compared(
            f"commands on a {scale.big_account:,}-key account (floor: {scale.small_account}-key account)",
            f"{scale.account_commands} commands/run, one snapshot per run on the large account",
            "/s", small, big, higher_is_better=True, minimum=0.5,
        )
    ]  # fmt: skip
