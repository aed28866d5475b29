"""Point in time: an account's views as they were at any past instant, by replay.

An account's events are replayed in stream order into fresh in-memory views, keeping
those whose effective time is at or before the instant: the recording time for every
event but ``GraceExpired``, whose effective time is its ``grace_until`` (so one recorded
late changes nothing before its deadline). A secret in grace at the instant is valid
while ``instant < grace_until``, exactly as verification decides it now.
"""

from __future__ import annotations

from datetime import datetime

from eventsourcing.persistence import ApplicationRecorder

from keyledger.adapters.driven.memory_views import MemoryViews
from keyledger.adapters.driven.transcoding import PydanticMapper
from keyledger.domain import Keyring
from keyledger.projections.catalogue import KeyView
from keyledger.projections.project import project


def replay(recorder: ApplicationRecorder, mapper: PydanticMapper, account: str, at: datetime) -> MemoryViews:
    """The account's views as of ``at``."""
    views = MemoryViews()
    events = []
    for stored in recorder.select_events(Keyring.id_for(account)):
        # Positions in the replay are stream versions: the same order within one account.
        event = mapper.to_recorded(stored, stored.originator_version, stored.originator_version - 1)
        if event.occurred_at <= at:
            events.append(event)
    views.write(events, project, after=0)
    return views


def keys_at(views: MemoryViews, account: str, at: datetime, positions: dict[str, int]) -> list[KeyView]:
    """The replayed keys as listed at ``at``, with their creation positions in the store."""
    return [
        view.model_copy(update={"created_position": positions.get(view.key_id, view.created_position)})
        for view in views.keys(account, at)
    ]
