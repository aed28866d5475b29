"""Writers in several processes share one ledger without losing, duplicating or
interleaving anything, and a command that keeps losing the race records nothing.

The workers are separate Python processes (``sys.executable -c``) that open the same
SQLite file or PostgreSQL schema, print ``ready``, wait for a start time on stdin so
they all begin together, run their task and print a JSON summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from keyledger import Actor, Conflict, Ledger, Permission
from keyledger.adapters.driven.account_locks import AccountLocks
from keyledger.domain import Keyring

if TYPE_CHECKING:
    from tests.integration.conftest import StoreTables

WRITERS = ("alice", "bob", "dave")
CREATES = 40
CAROL_CREATES = 3000
"""More than she can create before the removal lands 0.3 s in, on any store (she stops at
the first refusal)."""
WORKER_TIMEOUT = 120
Summary = dict[str, Any]
"""What a worker printed (see ``WORKER``)."""

WORKER = r"""
import json, sys, threading, time
from keyledger import AccessRevoked, Actor, Conflict, Ledger, StoreUnavailable

config = json.loads(sys.argv[1])
actor = Actor(user_id=config["user"], account="acme", permissions=config["permissions"])
summary = {"open_errors": [], "created": [], "current": {}, "regenerated": [], "revoked": [],
           "create_conflicts": 0, "other_conflicts": 0, "refused": None, "removed": [],
           "revoke_calls": 0}


def wait_until(moment):
    while time.time() < moment:
        time.sleep(min(0.01, max(0.0, moment - time.time() - 0.005)))


def create_and_manage(ledger):
    for turn in range(config["creates"]):
        try:
            issued = ledger.create_key(actor, name=f"{config['user']} {turn}")
        except Conflict:
            summary["create_conflicts"] += 1
            continue
        except AccessRevoked:
            summary["refused"] = "AccessRevoked"
            return
        summary["created"].append(issued.key_id)
        summary["current"][issued.key_id] = issued.secret.get_secret_value()
        mine = summary["created"]
        try:
            if config["manage"] and turn % 10 == 5 and len(mine) >= 2:
                mode = "grace" if turn % 20 == 5 else "immediate"
                again = ledger.regenerate_key(actor, mine[-2], mode=mode)
                summary["regenerated"].append(again.key_id)
                summary["current"][again.key_id] = again.secret.get_secret_value()
            if config["manage"] and turn % 10 == 9 and len(mine) >= 3:
                ledger.revoke_key(actor, mine[-3], reason="rotated")
                summary["revoked"].append(mine[-3])
                del summary["current"][mine[-3]]
        except Conflict:
            summary["other_conflicts"] += 1


def revoke_user(ledger):
    time.sleep(config["delay"])
    while summary["revoke_calls"] < 200:
        summary["revoke_calls"] += 1
        try:
            summary["removed"] = ledger.revoke_user_access(actor, config["target"])
            return
        except Conflict:
            time.sleep(0.01)


def wait_for_start():
    print("ready", flush=True)
    return float(sys.stdin.readline())


if config["task"] == "open":
    start = wait_for_start()
    closing = []
    for turn, url in enumerate(config["urls"]):
        wait_until(start + turn * config["interval"])
        try:
            opened = Ledger.open(url)
        except Exception as error:
            summary["open_errors"].append(f"{type(error).__module__}.{type(error).__qualname__}: {error}")
            continue
        # Close behind the next round, so a slow close never delays the next opening.
        closing.append(threading.Thread(target=opened.close))
        closing[-1].start()
    for closer in closing:
        closer.join()
else:
    # Opening together is TestOpeningTogether's subject; here the writers only need to be open.
    for attempt in range(10):
        try:
            ledger = Ledger.open(config["url"])
            break
        except StoreUnavailable as error:
            summary["open_errors"].append(str(error))
            time.sleep(0.1 * (attempt + 1))
    with ledger:
        wait_until(wait_for_start())
        if config["task"] == "revoke_user":
            revoke_user(ledger)
        else:
            create_and_manage(ledger)
print(json.dumps(summary), flush=True)
"""


def worker(user: str, *permissions: Permission, **task: object) -> dict[str, object]:
    """One worker's instructions: by default, create nothing as ``user`` in acme."""
    config: dict[str, object] = {
        "user": user,
        "permissions": [p.value for p in permissions or (Permission.INTEGRATION,)],
        "task": "create",
        "creates": 0,
        "manage": False,
    }
    config.update(task)
    return config


def run_workers(configs: list[dict[str, object]], cwd: Path) -> list[Summary]:
    """Start one process per config, start their tasks together, return their summaries."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )
        for config in configs
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                _, errors = process.communicate(timeout=WORKER_TIMEOUT)
                pytest.fail(f"a worker failed to start:\n{errors}")
        start = time.time() + 0.5
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(f"{start}\n")
            process.stdin.flush()
        summaries = []
        for process in processes:
            output, errors = process.communicate(timeout=WORKER_TIMEOUT)
            assert process.returncode == 0, f"a worker failed:\n{errors}"
            summaries.append(json.loads(output.strip().splitlines()[-1]))
        return summaries
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


def revoked_users(ledger: Ledger, account: str) -> set[str]:
    """Users whose latest access event in the account is a revocation."""
    latest: dict[str, str] = {}
    for entry in ledger.audit(
        account=account, action=("UserAccessRevoked", "UserAccessRestored"), limit=10_000
    ):
        latest[entry.details["user_id"]] = entry.action
    return {user for user, action in latest.items() if action == "UserAccessRevoked"}


@pytest.fixture(scope="class")
def summaries(class_url: str, tmp_path_factory: pytest.TempPathFactory) -> list[Summary]:
    """Each writer creates 40 keys in acme, regenerating and revoking some of them."""
    Ledger.open(class_url).close()
    workers = [worker(user, url=class_url, creates=CREATES, manage=True) for user in WRITERS]
    return run_workers(workers, tmp_path_factory.mktemp("workers"))


@pytest.fixture(scope="class")
def race(class_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Summary, Summary]:
    """Carol creates keys as fast as she can; after 0.3 s an administrator removes her,
    calling again for as long as the ledger answers Conflict."""
    Ledger.open(class_url).close()
    carol, root = run_workers(
        [
            worker("carol", url=class_url, creates=CAROL_CREATES),
            worker(
                "root",
                Permission.INTEGRATION,
                Permission.USER_MANAGEMENT,
                url=class_url,
                task="revoke_user",
                target="carol",
                delay=0.3,
            ),
        ],
        tmp_path_factory.mktemp("workers"),
    )
    return carol, root


class TestOpeningTogether:
    """Processes that start at the same moment (a service's workers) can all open the store."""

    def test_every_process_opens_a_new_store(
        self, new_urls: Callable[[int], list[str]], tmp_path: Path
    ) -> None:
        """Four processes opening the same new store at once all succeed, store after store."""
        urls = new_urls(3)
        workers = [worker(user, task="open", urls=urls, interval=0.2) for user in ("a", "b", "c", "d")]

        summaries = run_workers(workers, tmp_path)

        assert [error for s in summaries for error in s["open_errors"]] == []

    def test_every_process_opens_an_existing_store(
        self, new_urls: Callable[[int], list[str]], tmp_path: Path
    ) -> None:
        """Four processes opening the same store, opened once before, all succeed, again and again."""
        (url,) = new_urls(1)
        Ledger.open(url).close()
        urls = [url] * 3
        workers = [worker(user, task="open", urls=urls, interval=0.2) for user in ("a", "b", "c", "d")]

        summaries = run_workers(workers, tmp_path)

        assert [error for s in summaries for error in s["open_errors"]] == []


class TestConcurrentWriters:
    """Three processes creating, regenerating and revoking keys of one account lose,
    duplicate and interleave nothing."""

    def test_every_acknowledged_key_is_listed_once(self, summaries: list[Summary], class_url: str) -> None:
        """Every key a writer was told it created is listed exactly once, and nothing else is."""
        acknowledged = [key_id for summary in summaries for key_id in summary["created"]]

        with Ledger.open(class_url) as ledger:
            listed = Counter(key.key_id for key in ledger.keys("acme"))

        assert len(acknowledged) == CREATES * len(WRITERS) - sum(s["create_conflicts"] for s in summaries)
        assert listed == Counter(acknowledged)

    def test_the_audit_has_one_creation_per_acknowledged_key(
        self, summaries: list[Summary], class_url: str
    ) -> None:
        """The audit trail holds one KeyCreated entry per acknowledged create, by its creator."""
        acknowledged = {
            key_id: user for s, user in zip(summaries, WRITERS, strict=True) for key_id in s["created"]
        }

        with Ledger.open(class_url) as ledger:
            created = ledger.audit(account="acme", action="KeyCreated", limit=10_000)

        assert len(created) == len(acknowledged)
        assert {entry.key_id: entry.actor for entry in created} == acknowledged

    def test_the_stream_has_no_gap_or_duplicate(
        self, summaries: list[Summary], class_url: str, store_tables: type[StoreTables]
    ) -> None:
        """The account's stored versions run 1..n in notification order, and its chain holds."""
        changes = sum(len(s["created"]) + len(s["regenerated"]) + len(s["revoked"]) for s in summaries)

        versions = store_tables(class_url).stream_versions("acme")
        with Ledger.open(class_url) as ledger:
            report = ledger.check_integrity()

        assert versions == list(range(1, changes + 1))
        assert report.ok, report
        assert report.events_checked == changes

    def test_the_current_secrets_verify_in_another_process(
        self, summaries: list[Summary], class_url: str
    ) -> None:
        """Each kept key's newest secret verifies as that key, and the revoked keys are listed revoked."""
        current = {key_id: secret for s in summaries for key_id, secret in s["current"].items()}
        revoked = {key_id for s in summaries for key_id in s["revoked"]}

        with Ledger.open(class_url) as ledger:
            verified = {key_id: ledger.verify(secret) for key_id, secret in current.items()}
            listed_revoked = {key.key_id for key in ledger.keys("acme") if key.status == "revoked"}

        assert revoked
        assert {key_id: p.key_id if p else None for key_id, p in verified.items()} == {k: k for k in current}
        assert listed_revoked == revoked

    def test_no_command_gives_up_with_conflict(self, summaries: list[Summary]) -> None:
        """With three writers on one account, every command succeeds within its ten attempts."""
        conflicts = {
            user: (s["create_conflicts"], s["other_conflicts"])
            for s, user in zip(summaries, WRITERS, strict=True)
        }

        assert conflicts == dict.fromkeys(WRITERS, (0, 0))


class TestRemovingAUserWhileTheyCreate:
    """Revoking a user's access races their key creation without leaving a key of theirs working."""

    def test_no_key_of_a_revoked_user_stays_active(
        self, race: tuple[Summary, Summary], class_url: str
    ) -> None:
        """After the race, no active key was created by a user whose access is revoked."""
        with Ledger.open(class_url) as ledger:
            revoked = revoked_users(ledger, "acme")
            active = [key for key in ledger.keys("acme") if key.status == "active"]

        assert revoked == {"carol"}
        assert [key.key_id for key in active if key.created_by in revoked] == []

    def test_the_removal_names_every_key_carol_was_given(
        self, race: tuple[Summary, Summary], class_url: str
    ) -> None:
        """The removal returns exactly the keys Carol was acknowledged, and none of their secrets works."""
        carol, root = race

        with Ledger.open(class_url) as ledger:
            working = [key_id for key_id, secret in carol["current"].items() if ledger.verify(secret)]
            report = ledger.check_integrity()

        assert carol["created"]
        assert sorted(root["removed"]) == sorted(carol["created"])
        assert working == []
        assert report.ok, report

    def test_the_removal_lands_while_she_creates(self, race: tuple[Summary, Summary]) -> None:
        """The administrator's one call succeeds, and Carol's next create is refused."""
        carol, root = race

        assert (root["revoke_calls"], carol["refused"]) == (1, "AccessRevoked")
        assert len(carol["created"]) < CAROL_CREATES


class TestLosingTheRace:
    """A command whose account changes between its load and its save decides again, or
    gives up with Conflict having recorded nothing."""

    @pytest.fixture
    def interfere(
        self, monkeypatch: pytest.MonkeyPatch, bob: Actor
    ) -> Callable[[Ledger, Ledger, int], list[str]]:
        """Make ``loser`` load, then ``winner`` create a key, ``times`` times; returns the
        winner's key ids. The winner takes no turn (on PostgreSQL it would wait for the
        loser's): it stands for any writer the version check alone must stop."""

        def _interfere(loser: Ledger, winner: Ledger, times: int) -> list[str]:
            monkeypatch.setattr(winner._connection, "locks", AccountLocks())
            load = loser._commands.load
            created: list[str] = []

            def interfering_load(account: str, now: datetime) -> Keyring:
                keyring = load(account, now)
                if len(created) < times:
                    created.append(winner.create_key(bob, name=f"Winner {len(created)}").key_id)
                return keyring

            monkeypatch.setattr(loser._commands, "load", interfering_load)
            return created

        return _interfere

    def test_a_single_attempt_that_loses_raises_conflict(
        self,
        durable_url: str,
        open_ledger: Callable[..., Ledger],
        store_tables: type[StoreTables],
        interfere: Callable[[Ledger, Ledger, int], list[str]],
        alice: Actor,
    ) -> None:
        """With one attempt allowed, a create that loses raises Conflict and records nothing."""
        loser = open_ledger(durable_url, max_attempts=1)
        winner = open_ledger(durable_url)
        loser.create_key(alice, name="Existing")
        winners = interfere(loser, winner, 1)

        with pytest.raises(Conflict):
            loser.create_key(alice, name="Loser")

        fresh = open_ledger(durable_url)
        assert [k.name for k in fresh.keys("acme")] == ["Existing", "Winner 0"]
        # Whether the loser's views already follow the winner depends on the views; the
        # losing key is never listed either way.
        assert "Loser" not in [k.name for k in loser.keys("acme")]
        assert [e.key_id for e in fresh.audit(action="KeyCreated")][1:] == winners
        assert store_tables(durable_url).stream_versions("acme") == [1, 2]
        assert fresh.check_integrity().ok

    def test_a_first_command_on_a_new_account_that_loses_raises_conflict(
        self,
        durable_url: str,
        open_ledger: Callable[..., Ledger],
        store_tables: type[StoreTables],
        interfere: Callable[[Ledger, Ledger, int], list[str]],
        alice: Actor,
    ) -> None:
        """A create that loses the race to begin a new account's stream raises Conflict."""
        loser = open_ledger(durable_url, max_attempts=1)
        winner = open_ledger(durable_url)
        interfere(loser, winner, 1)

        with pytest.raises(Conflict):
            loser.create_key(alice, name="Loser")

        fresh = open_ledger(durable_url)
        assert [k.name for k in fresh.keys("acme")] == ["Winner 0"]
        assert store_tables(durable_url).stream_versions("acme") == [1]

    def test_a_losing_regeneration_leaves_the_old_secret_working(
        self,
        durable_url: str,
        open_ledger: Callable[..., Ledger],
        interfere: Callable[[Ledger, Ledger, int], list[str]],
        alice: Actor,
    ) -> None:
        """An immediate regeneration that raises Conflict leaves the key's secret working."""
        loser = open_ledger(durable_url, max_attempts=1)
        winner = open_ledger(durable_url)
        issued = loser.create_key(alice, name="Kept")
        interfere(loser, winner, 1)

        with pytest.raises(Conflict):
            loser.regenerate_key(alice, issued.key_id, mode="immediate")

        fresh = open_ledger(durable_url)
        secret = issued.secret.get_secret_value()
        assert loser.verify(secret) is not None
        assert fresh.verify(secret) is not None
        assert fresh.audit(action="KeyRegenerated") == []

    def test_a_command_that_loses_once_decides_again(
        self,
        durable_url: str,
        open_ledger: Callable[..., Ledger],
        store_tables: type[StoreTables],
        interfere: Callable[[Ledger, Ledger, int], list[str]],
        alice: Actor,
    ) -> None:
        """With attempts to spare, a command that loses reloads, decides again and is recorded once."""
        loser = open_ledger(durable_url, max_attempts=2)
        winner = open_ledger(durable_url)
        loser.create_key(alice, name="Existing")
        interfere(loser, winner, 1)

        issued = loser.create_key(alice, name="Retried")

        names = ["Existing", "Winner 0", "Retried"]
        assert [k.name for k in loser.keys("acme")] == names
        assert [k.name for k in open_ledger(durable_url).keys("acme")] == names
        assert store_tables(durable_url).stream_versions("acme") == [1, 2, 3]
        principal = loser.verify(issued.secret.get_secret_value())
        assert principal is not None
        assert principal.name == "Retried"
