"""The integrity check: every stored event against its account's hash chain."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import cast
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, MapperDeserialisationError
from eventsourcing.utils import resolve_topic

from keyledger.adapters.sqlite_views import row_reader
from keyledger.adapters.transcoding import PydanticMapper, canonical_json, upcast
from keyledger.domain.chain import GENESIS, link
from keyledger.projections.facts import Fact, action_of
from keyledger.projections.valid_keys import Principal, ValidKeyIndex
from keyledger.results import IntegrityReport

PAGE_SIZE = 1000


def check_integrity(
    recorder: ApplicationRecorder,
    mapper: PydanticMapper,
    progress: Callable[[int, int], None] | None = None,
    valid_entries: Callable[[], Iterable[tuple[bytes, Principal]]] | None = None,
    audit_chains: Callable[[int, int], tuple[int, dict[int, str]]] | None = None,
) -> IntegrityReport:
    """Recompute every event's chain in global order; report the first that breaks.

    An edited event breaks its own link; a deleted or reordered one breaks the version
    sequence or the next link. Removing an account's newest events leaves a shorter,
    valid chain: compare with an exported checkpoint to catch that.

    With ``valid_entries`` (the stored valid-key table), the table that verification
    loads is also compared with the one the checked events give: a forged, altered or
    missing row is reported (``first_bad_position`` is then ``None``; rebuild the
    projections to repair it).

    With ``audit_chains(after, upto)`` (how far the views have reached, and the audit
    trail's chain at each position in that range), the stored events are also compared with
    the audit trail position by position: an account's newest event deleted, or events of
    two accounts swapped in the global order (each account's chain still intact), is
    reported at its position; so is any deleted event, rather than at the account's next
    event where its chain breaks.
    """
    expected = ValidKeyIndex()
    read = row_reader(recorder)
    total = recorder.max_notification_id() or 0
    heads: dict[object, tuple[int, str, str]] = {}
    """Per stream as stored: the last version checked, its chain, and the id as text."""
    checked = 0
    position = 0
    while True:
        page = read(position, PAGE_SIZE)
        if not page:
            if audit_chains is not None:
                # The trail may go on past the last stored event: the newest deleted.
                _, beyond = audit_chains(position, sys.maxsize)
                if beyond:
                    return IntegrityReport(
                        ok=False, events_checked=checked, first_bad_position=min(beyond),
                        reason="the stored events differ from the audit trail at this position",
                    )  # fmt: skip
            if valid_entries is not None:
                stored = list(valid_entries())
                if dict(stored) != expected.as_dict() or len(stored) != len(expected):
                    differing = len(set(stored) ^ set(expected.entries()))
                    return IntegrityReport(
                        ok=False, events_checked=checked,
                        reason=f"the valid-key table differs from the events in {differing} row(s)",
                    )  # fmt: skip
            return IntegrityReport(ok=True, events_checked=checked)
        last = page[-1][0]
        if progress is not None:
            progress(last, max(total, last))
        recorded = audit_chains(position, last) if audit_chains is not None else None
        seen: dict[int, str] = {}
        failure = None
        for position, originator, version, topic, data in page:
            checked += 1
            failure = None
            head = heads.get(originator)
            try:
                if head is None:
                    head = (0, GENESIS, str(UUID(str(originator))))
                state = mapper.decode_bytes(data, position)
            except (ValueError, MapperDeserialisationError):
                failure = (position, "event cannot be read")
                break
            chain = state.get("chain") if isinstance(state, dict) else None
            if version != head[0] + 1:
                failure = (position, f"version {version} follows version {head[0]}")
            elif not isinstance(chain, str):
                failure = (position, "event cannot be read")
            elif chain != link(head[1], head[2], version, topic, state, canonical_json):
                failure = (position, "event does not match its chain")
            if failure is not None:
                break
            chain = cast(str, chain)  # the checks above passed: it is text
            heads[originator] = (version, chain, head[2])
            seen[position] = chain
            if "class_version" in state:
                upcast(resolve_topic(topic), state)
            expected.apply(Fact(position, version, action_of(topic), state, 0))
        # The first bad position is the earliest place the store differs: an event the
        # audit trail recorded and the store no longer holds (deleted, moved) is reported
        # at its own place, even when the chain only breaks at a later event.
        if recorded is not None:
            reached, chains = recorded
            below = failure[0] if failure is not None else reached + 1
            unlike = [
                p
                for p in sorted(chains.keys() | seen.keys())
                if p <= reached and p < below and chains.get(p) != seen.get(p)
            ]
            if unlike:
                return IntegrityReport(
                    ok=False, events_checked=checked, first_bad_position=unlike[0],
                    reason="the stored events differ from the audit trail at this position",
                )  # fmt: skip
        if failure is not None:
            return _broken(checked, *failure)


def _broken(checked: int, position: int, reason: str) -> IntegrityReport:
    return IntegrityReport(ok=False, events_checked=checked, first_bad_position=position, reason=reason)
