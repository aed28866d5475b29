"""The integrity check: every stored event against its account's hash chain, and the
views and a checkpoint against those events, all as of one moment.

The moment is the views' consistent read (one read transaction on one snapshot: SQLite
in WAL mode, PostgreSQL at REPEATABLE READ; copies taken under the lock in memory): its
position, valid-key table and audit trail belong together, whatever other processes
commit while the check runs. The events are read up to the log head as it was just
after that moment began. Stored events are only ever appended, and the views only ever
hold events already committed, so the events up to the views' position read later are
the same ones the views were built from: the comparison is of one moment, and a commit
during the check is neither a false alarm nor checked (the next check covers it).

A checkpoint (:func:`take_checkpoint`) records each account's stream version and chain
at one position; kept outside the database, it shows what the unkeyed chain cannot: an
account's newest events cut off, or an event edited and every chain after it
recomputed (the views rebuilt to match).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import cast
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, MapperDeserialisationError

from keyledger.adapters.driven.sql_views import EventRow
from keyledger.adapters.driven.sqlite_views import row_reader
from keyledger.adapters.driven.transcoding import PydanticMapper, canonical_json
from keyledger.domain import IntegrityViolation, Keyring
from keyledger.domain.chain import GENESIS, link
from keyledger.projections.ports import ConsistentRead, ViewStore
from keyledger.projections.valid_keys import ValidKeyIndex
from keyledger.results import AccountHead, Checkpoint, IntegrityReport

PAGE_SIZE = 1000
SCAN_PAGE_SIZE = 10_000
"""Rows per read when only the streams' heads are wanted (nothing decoded)."""
AUDIT_DIFFERS = "the stored events differ from the audit trail at this position"


def check_integrity(
    recorder: ApplicationRecorder,
    mapper: PydanticMapper,
    progress: Callable[[int, int], None] | None = None,
    views: ViewStore | None = None,
    checkpoint: Checkpoint | None = None,
) -> IntegrityReport:
    """Recompute every event's chain in global order; report the first that breaks.

    An edited event breaks its own link; a deleted or reordered one breaks the version
    sequence or the next link. Removing an account's newest events leaves a shorter,
    valid chain, and so does editing an event and recomputing every chain after it:
    compare with a ``checkpoint`` kept outside the database to catch those.

    With ``views``, as of one moment (see the module's docstring): the valid-key table
    that verification loads is compared with the one the events up to the views'
    position give (a forged, altered or missing row is reported, with
    ``first_bad_position`` ``None``; rebuild the projections to repair it), and the audit
    trail with the events position by position (an account's newest event deleted, or
    events of two accounts swapped in the global order, each account's chain intact, is
    reported at its position; so is any deleted event, rather than at the account's next
    event where its chain breaks).

    With ``checkpoint``: every account it lists must still hold, at the checkpoint's
    version, the event whose chain it recorded (the reason names the first that does not).

    ``progress(position, head)`` is called after each page read.
    """
    reading: AbstractContextManager[ConsistentRead | None] = (
        views.consistent_read() if views is not None else nullcontext()
    )
    with reading as moment:
        return _check(recorder, mapper, progress, moment, checkpoint)


def _check(
    recorder: ApplicationRecorder,
    mapper: PydanticMapper,
    progress: Callable[[int, int], None] | None,
    moment: ConsistentRead | None,
    checkpoint: Checkpoint | None,
) -> IntegrityReport:
    reached = moment.position if moment is not None else 0
    """How far the views had reached at the moment: they are compared up to there."""
    # Read after the moment began, so at or past the views' position.
    head = max(recorder.max_notification_id() or 0, reached)
    last_wanted = max(head, checkpoint.position) if checkpoint is not None else head
    expected = ValidKeyIndex() if moment is not None else None
    pins = _pins(checkpoint) if checkpoint is not None else None
    pinned: dict[str, bool] = {}
    """Per pinned stream id reached at its pinned version: whether the chain matched."""
    read = row_reader(recorder)
    heads: dict[object, tuple[int, str, str]] = {}
    """Per stream as stored: the last version checked, its chain, and the id as text."""
    checked = 0
    position = 0
    while position < last_wanted:
        page = read(position, PAGE_SIZE)
        if page and page[-1][0] > last_wanted:
            page = [row for row in page if row[0] <= last_wanted]
        if not page:
            break
        last = page[-1][0]
        if progress is not None:
            progress(last, max(head, last))
        recorded = None
        if moment is not None and position < reached:
            recorded = moment.audit_chains(position, min(last, reached))
        seen: dict[int, str] = {}
        failure = None
        for position, originator, version, topic, data in page:
            checked += 1
            head_of = heads.get(originator)
            try:
                if head_of is None:
                    head_of = (0, GENESIS, str(UUID(str(originator))))
                state = mapper.decode_bytes(data, position)
            except (ValueError, MapperDeserialisationError):
                failure = (position, "event cannot be read")
                break
            chain = state.get("chain") if isinstance(state, dict) else None
            if version != head_of[0] + 1:
                failure = (position, f"version {version} follows version {head_of[0]}")
            elif not isinstance(chain, str):
                failure = (position, "event cannot be read")
            elif chain != link(head_of[1], head_of[2], version, topic, state, canonical_json):
                failure = (position, "event does not match its chain")
            if failure is not None:
                break
            chain = cast(str, chain)  # the checks above passed: it is text
            heads[originator] = (version, chain, head_of[2])
            seen[position] = chain
            if pins is not None and (pin := pins.get(head_of[2])) is not None and pin[1] == version:
                pinned[head_of[2]] = pin[2] == chain
            if expected is not None and position <= reached:
                try:
                    # The stored fields as read for the chain, upcast in place: they are
                    # not needed as stored any more.
                    event = mapper.recorded_from(state, topic, version, position, 0)
                except MapperDeserialisationError:
                    failure = (position, "event cannot be read")
                    break
                expected.apply(event)
        # The first bad position is the earliest place the store differs: an event the
        # audit trail recorded and the store no longer holds (deleted, moved) is reported
        # at its own place, even when the chain only breaks at a later event.
        if recorded is not None:
            below = failure[0] if failure is not None else last + 1
            unlike = [
                p
                for p in sorted(recorded.keys() | seen.keys())
                if p <= reached and p < below and recorded.get(p) != seen.get(p)
            ]
            if unlike:
                return _broken(checked, unlike[0], AUDIT_DIFFERS)
        if failure is not None:
            return _broken(checked, *failure)
    if moment is not None and position < reached:
        # The trail goes on past the last stored event: the newest deleted.
        beyond = moment.audit_chains(position, reached)
        if beyond:
            return _broken(checked, min(beyond), AUDIT_DIFFERS)
    problem = None
    if pins is not None:
        problem = _unlike_checkpoint(pins, pinned, {name: version for version, _, name in heads.values()})
    if problem is None and moment is not None and expected is not None:
        problem = _unlike_valid_table(moment, expected)
    return IntegrityReport(ok=problem is None, events_checked=checked, reason=problem)


def _unlike_checkpoint(
    pins: dict[str, tuple[str, int, str]], pinned: dict[str, bool], versions: dict[str, int]
) -> str | None:
    """How the first account (by name) whose stream differs from its pin differs, if any."""
    for name, (account, version, _) in sorted(pins.items(), key=lambda item: item[1][0]):
        if name not in pinned:
            return (
                f"account {account!r} holds {versions.get(name, 0)} event(s), fewer than the {version} "
                "of the checkpoint: its newest events were removed"
            )
        if not pinned[name]:
            return (
                f"account {account!r} differs from the checkpoint at version {version}: its history up "
                "to there was rewritten"
            )
    return None


def _unlike_valid_table(moment: ConsistentRead, expected: ValidKeyIndex) -> str | None:
    """How the valid-key table at the moment differs from the one the events give, if it does."""
    stored = list(moment.valid_entries())
    if dict(stored) == expected.as_dict() and len(stored) == len(expected):
        return None
    differing = len(set(stored) ^ set(expected.entries()))
    return f"the valid-key table differs from the events in {differing} row(s)"


def _pins(checkpoint: Checkpoint) -> dict[str, tuple[str, int, str]]:
    """Per stream id (as text): the account, its version and chain at the checkpoint."""
    return {
        str(Keyring.id_for(account)): (account, head.version, head.chain)
        for account, head in checkpoint.accounts.items()
    }


def _broken(checked: int, position: int, reason: str) -> IntegrityReport:
    return IntegrityReport(ok=False, events_checked=checked, first_bad_position=position, reason=reason)


def take_checkpoint(recorder: ApplicationRecorder, mapper: PydanticMapper, now: datetime) -> Checkpoint:
    """Each account's stream version and chain at the log head, read from the events.

    It records the history as it stands and does not check it: check the ledger (against
    the previous checkpoint) first, so a checkpoint never vouches for a rewritten history.
    Raises :class:`IntegrityViolation` if a stream's newest event cannot be read."""
    head = recorder.max_notification_id() or 0
    read = row_reader(recorder)
    newest: dict[object, EventRow] = {}
    position = 0
    while position < head:
        page = read(position, SCAN_PAGE_SIZE)
        if not page:
            break
        for row in page:
            if row[0] <= head:
                newest[row[1]] = row
        position = page[-1][0]
    accounts: dict[str, AccountHead] = {}
    for position, originator, version, _, data in newest.values():
        try:
            state = mapper.decode_bytes(data, position)
            account = state["account"]
            if not isinstance(account, str) or Keyring.id_for(account) != UUID(str(originator)):
                raise ValueError("the event names another account than its stream's")
            accounts[account] = AccountHead(version=version, chain=state["chain"])
        except (ValueError, TypeError, KeyError, MapperDeserialisationError):
            raise IntegrityViolation(
                f"the event at position {position} cannot be read as its stream's newest: run the "
                "integrity check"
            ) from None
    return Checkpoint(position=head, taken_at=now, accounts=dict(sorted(accounts.items())))
