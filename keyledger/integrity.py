"""The integrity check: every stored event against its account's hash chain."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, MapperDeserialisationError
from eventsourcing.utils import resolve_topic

from keyledger.adapters.transcoding import PydanticMapper, upcast
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
    reported at its position.
    """
    expected = ValidKeyIndex()
    total = recorder.max_notification_id() or 0
    heads: dict[UUID | str, tuple[int, str]] = {}
    checked = 0
    position = 0
    while True:
        page = recorder.select_notifications(start=position + 1, limit=PAGE_SIZE)
        if not page:
            if valid_entries is not None:
                stored = sorted(valid_entries())
                if stored != expected.entries():
                    differing = len(set(stored) ^ set(expected.entries()))
                    return IntegrityReport(
                        ok=False, events_checked=checked,
                        reason=f"the valid-key table differs from the events in {differing} row(s)",
                    )  # fmt: skip
            return IntegrityReport(ok=True, events_checked=checked)
        if progress is not None:
            progress(page[-1].id, max(total, page[-1].id))
        recorded = audit_chains(position, page[-1].id) if audit_chains is not None else None
        seen: dict[int, str] = {}
        for notification in page:
            position = notification.id
            checked += 1
            version, previous = heads.get(notification.originator_id, (0, GENESIS))
            reason = None
            chain: str | None = ""
            if notification.originator_version != version + 1:
                reason = f"version {notification.originator_version} follows version {version}"
            else:
                try:
                    state = mapper.decode_state(notification)
                except MapperDeserialisationError:
                    state = {}
                chain = state.get("chain") if isinstance(state, dict) else None
                if not isinstance(chain, str):
                    reason = "event cannot be read"
                elif chain != link(
                    previous,
                    str(notification.originator_id),
                    notification.originator_version,
                    notification.topic,
                    state,
                ):
                    reason = "event does not match its chain"
            if reason is not None:
                return IntegrityReport(
                    ok=False, events_checked=checked, first_bad_position=position, reason=reason
                )
            heads[notification.originator_id] = (notification.originator_version, chain or "")
            seen[position] = chain or ""
            if "class_version" in state:
                upcast(resolve_topic(notification.topic), state)
            expected.apply(
                Fact(position, notification.originator_version, action_of(notification.topic), state, 0)
            )
        if recorded is not None:
            reached, chains = recorded
            unlike = [
                p
                for p in sorted(chains.keys() | seen.keys())
                if p <= reached and chains.get(p) != seen.get(p)
            ]
            if unlike:
                return IntegrityReport(
                    ok=False, events_checked=checked, first_bad_position=unlike[0],
                    reason="the stored events differ from the audit trail at this position",
                )  # fmt: skip
