"""The integrity check: every stored event against its account's hash chain."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, MapperDeserialisationError

from keyledger.adapters.transcoding import PydanticMapper
from keyledger.domain.chain import GENESIS, link
from keyledger.results import IntegrityReport

PAGE_SIZE = 1000


def check_integrity(
    recorder: ApplicationRecorder,
    mapper: PydanticMapper,
    progress: Callable[[int, int], None] | None = None,
) -> IntegrityReport:
    """Recompute every event's chain in global order; report the first that breaks.

    An edited event breaks its own link; a deleted or reordered one breaks the version
    sequence or the next link. Removing an account's newest events leaves a shorter,
    valid chain: compare with an exported checkpoint to catch that.
    """
    total = recorder.max_notification_id() or 0
    heads: dict[UUID | str, tuple[int, str]] = {}
    checked = 0
    position = 0
    while True:
        page = recorder.select_notifications(start=position + 1, limit=PAGE_SIZE)
        if not page:
            return IntegrityReport(ok=True, events_checked=checked)
        if progress is not None:
            progress(page[-1].id, max(total, page[-1].id))
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
