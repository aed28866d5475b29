"""The processes the reliability tests start: ``python worker.py MODE CONFIG_JSON``.

``writer``
    One of several concurrent writers: opens the ledger, prints ``{"ready": true}``,
    waits for a start time on stdin, runs its commands and prints one JSON line per
    outcome (an acknowledgement, a refusal, a conflict), flushed before the next
    command. It then prints ``{"done": true}``, reads the secrets of every writer from
    stdin, catches up and prints what its own views say of them.
``tamper``
    Applies each tampering job of a JSON file (a byte edited, an event deleted, two
    events swapped) to a SQLite ledger, runs the integrity check, undoes the job, and
    prints one ``[ok, first_bad_position]`` per job.
``zygote``
    Imports keyledger once, then forks a child per ``{"spawn": {...}}`` line on stdin
    (answering ``{"pid": N}``), so a test can kill hundreds of children without paying
    for an interpreter each time. A child appends its acknowledgements to a log file
    with one ``write`` each, before it goes on: a line in the log is a command that
    returned. Children are ``kill_writer`` (commands forever) or ``follower`` (applies
    other processes' events and logs each run of positions it applied).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

from keyledger import (
    AccessRevoked,
    Actor,
    Conflict,
    KeyAlreadyRevoked,
    KeyNotFound,
    Ledger,
    Permission,
    PermissionDenied,
    StoreUnavailable,
    UserAccessUnchanged,
)
from keyledger.follower import Follower

Record = dict[str, Any]
REFUSALS = (AccessRevoked, KeyAlreadyRevoked, KeyNotFound, PermissionDenied, UserAccessUnchanged)
OPERATIONS = ("create", "regenerate", "revoke", "revoke_user", "restore_user")
WEIGHTS = (40, 20, 10, 15, 15)
ADMIN = "root"
"""Every writer runs user commands as ``root``, who is never a target, so some
administrator can always restore a revoked user."""


class Commands:
    """Random commands on a few accounts, each turned into an acknowledgement record."""

    def __init__(self, ledger: Ledger, config: Record, rng: random.Random) -> None:
        self.ledger, self.rng = ledger, rng
        self.accounts: list[str] = config["accounts"]
        self.users: list[str] = config["users"]
        self.creators: list[str] = config.get("creators") or self.users
        self.known: dict[str, list[str]] = {
            account: [key.key_id for key in ledger.keys(account) if key.status == "active"]
            for account in self.accounts
        }

    def actor(self, user: str, account: str) -> Actor:
        return Actor(user_id=user, account=account, permissions=set(Permission))

    def run(self, turn: int) -> Record:
        """Run one random command; its acknowledgement, or what refused it."""
        account = self.rng.choice(self.accounts)
        user = self.rng.choice(self.creators)
        operation = self.rng.choices(OPERATIONS, WEIGHTS)[0]
        if operation in ("regenerate", "revoke") and not self.known[account]:
            operation = "create"
        try:
            return self._run(operation, account, user, turn)
        except Conflict:
            return {"conflict": operation, "account": account}
        except StoreUnavailable:
            return {"unavailable": operation, "account": account}
        except REFUSALS as error:
            return {"refused": operation, "account": account, "error": type(error).__name__}

    def _run(self, operation: str, account: str, user: str, turn: int) -> Record:
        ledger, known = self.ledger, self.known[account]
        if operation == "create":
            issued = ledger.create_key(self.actor(user, account), name=f"{user} {turn}")
            known.append(issued.key_id)
            secret = issued.secret.get_secret_value()
            return {"op": "create", "account": account, "key_id": issued.key_id, "by": user, "secret": secret}
        if operation == "regenerate":
            key_id = self.rng.choice(known)
            grace = self.rng.random() < 0.5
            try:
                issued = ledger.regenerate_key(
                    self.actor(user, account), key_id, mode="grace" if grace else "immediate"
                )
            except KeyAlreadyRevoked:
                known.remove(key_id)
                raise
            secret = issued.secret.get_secret_value()
            mode = "grace" if grace else "immediate"
            return {"op": "regenerate", "account": account, "key_id": key_id, "mode": mode, "secret": secret}
        if operation == "revoke":
            key_id = self.rng.choice(known)
            known.remove(key_id)
            ledger.revoke_key(self.actor(user, account), key_id, reason="rotated")
            return {"op": "revoke", "account": account, "key_id": key_id}
        target = self.rng.choice(self.users)
        if operation == "revoke_user":
            removed = ledger.revoke_user_access(self.actor(ADMIN, account), target)
            self.known[account] = [key_id for key_id in known if key_id not in removed]
            return {"op": "revoke_user", "account": account, "user": target, "removed": sorted(removed)}
        ledger.restore_user_access(self.actor(ADMIN, account), target)
        return {"op": "restore_user", "account": account, "user": target}


def emit(record: Record) -> None:
    print(json.dumps(record), flush=True)


def writer(config: Record) -> None:
    rng = random.Random(config["seed"])
    with Ledger.open(config["url"]) as ledger:
        commands = Commands(ledger, config, rng)
        emit({"ready": True})
        start = float(sys.stdin.readline())
        while time.time() < start:
            time.sleep(0.005)
        for turn in range(config["commands"]):
            emit(commands.run(turn))
        emit({"done": True})
        secrets: list[str] = json.loads(sys.stdin.readline())
        ledger.sync()
        verified = [ledger.verify(secret) for secret in secrets]
        emit(
            {
                "position": ledger.position,
                "verified": [None if p is None else [p.key_id, str(p.grace_until)] for p in verified],
            }
        )


def logger_for(path: str) -> Callable[[Record], None]:
    """Append records to ``path``, one ``write`` each: a record written is on the file
    even if the process is killed the next instant."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def log(record: Record) -> None:
        os.write(fd, (json.dumps(record) + "\n").encode())

    return log


def kill_writer(order: Record) -> None:
    log = logger_for(order["log"])
    rng = random.Random(order["seed"])
    ledger = Ledger.open(order["url"])
    log({"opened": ledger.position})
    commands = Commands(ledger, order, rng)
    deadline = time.monotonic() + order.get("lifetime", 60)
    turn = 0
    while time.monotonic() < deadline:
        turn += 1
        record = commands.run(turn)
        log(record)
        if "unavailable" in record:
            time.sleep(0.05)


def follower(order: Record) -> None:
    log = logger_for(order["log"])
    advance = Follower._advance

    def logged(self: Follower, events: list[Any]) -> None:
        before = self.position
        advance(self, events)
        log({"after": before, "positions": [event.position for event in events]})

    Follower._advance = logged  # type: ignore[method-assign]
    ledger = Ledger.open(order["url"])
    log({"opened": ledger.position})
    target = order.get("report_at")
    if target is None:
        time.sleep(order.get("lifetime", 60))
        return
    deadline = time.monotonic() + 60
    while ledger.position < target and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(order["secrets"], encoding="ascii") as source:
        secrets = json.load(source)
    verified = [ledger.verify(secret) for secret in secrets]
    log({"position": ledger.position, "verified": [None if p is None else p.key_id for p in verified]})
    ledger.close()


def tamper(config: Record) -> None:
    path = config["db"]
    results = []
    with Ledger.open(f"sqlite:///{path}", follow=False) as ledger, closing(sqlite3.connect(path)) as conn:
        conn.isolation_level = None
        for job in config["jobs"]:
            undo = TAMPERING[job[0]](conn, *job[1:])
            report = ledger.check_integrity()
            undo()
            results.append([report.ok, report.first_bad_position])
    print(json.dumps(results), flush=True)


Row = tuple[str, int, str, bytes]


def _row(conn: sqlite3.Connection, position: int) -> Row:
    found = conn.execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_events WHERE rowid = ?",
        [position],
    ).fetchone()
    return found[0], found[1], found[2], bytes(found[3])


def _put(conn: sqlite3.Connection, position: int, row: Row) -> None:
    conn.execute(
        "UPDATE stored_events SET originator_id = ?, originator_version = ?, topic = ?, state = ? "
        "WHERE rowid = ?",
        [*row, position],
    )


def edit(conn: sqlite3.Connection, position: int, offset: int, value: int) -> Callable[[], None]:
    """Change one byte of an event's stored state."""
    state = _row(conn, position)[3]
    changed = state[:offset] + bytes([value]) + state[offset + 1 :]
    conn.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", [changed, position])
    return lambda: conn.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", [state, position])


def delete(conn: sqlite3.Connection, position: int) -> Callable[[], None]:
    """Delete one event."""
    row = _row(conn, position)
    conn.execute("DELETE FROM stored_events WHERE rowid = ?", [position])
    return lambda: conn.execute(
        "INSERT INTO stored_events (rowid, originator_id, originator_version, topic, state) "
        "VALUES (?, ?, ?, ?, ?)",
        [position, *row],
    )


def swap(conn: sqlite3.Connection, first: int, second: int) -> Callable[[], None]:
    """Exchange two events' places."""
    one, other = _row(conn, first), _row(conn, second)

    def place(a: Row, b: Row) -> None:
        conn.execute("BEGIN")
        _put(conn, first, (a[0], -1, a[2], a[3]))
        _put(conn, second, b)
        _put(conn, first, a)
        conn.execute("COMMIT")

    place(other, one)
    return lambda: place(one, other)


TAMPERING: dict[str, Callable[..., Callable[[], None]]] = {"edit": edit, "delete": delete, "swap": swap}


CHILDREN: dict[str, Callable[[Record], None]] = {"kill_writer": kill_writer, "follower": follower}


def zygote() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    for line in sys.stdin:
        order = json.loads(line)
        if "spawn" not in order:
            return
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                CHILDREN[order["spawn"]["task"]](order["spawn"])
            except BaseException as error:
                code = 1
                log = logger_for(order["spawn"]["log"])
                log({"crashed": f"{type(error).__module__}.{type(error).__qualname__}"})
            finally:
                os._exit(code)
        emit({"pid": pid})


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "writer":
        writer(json.loads(sys.argv[2]))
    elif mode == "zygote":
        zygote()
    elif mode == "tamper":
        with open(sys.argv[2], encoding="utf-8") as source:
            tamper(json.load(source))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
