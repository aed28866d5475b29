"""The views this process keeps, and how they follow the notification log.

The valid-key index, the key catalogue and the audit trail are built from the global
event order when a Ledger opens and follow every event after that, in order: each
event is applied exactly once, at its position, under one lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from threading import RLock

from eventsourcing.persistence import ApplicationRecorder, Notification
from eventsourcing.utils import resolve_topic

from keyledger.adapters.transcoding import PydanticMapper, upcast
from keyledger.projections.audit import AuditTrail
from keyledger.projections.catalogue import KeyCatalogue
from keyledger.projections.facts import Fact, action_of
from keyledger.projections.valid_keys import ValidKeyIndex

PAGE_SIZE = 1000


class LedgerViews:
    """The views of one process and the position they have reached."""

    def __init__(self, mapper: PydanticMapper) -> None:
        self.mapper = mapper
        self.index = ValidKeyIndex()
        self.catalogue = KeyCatalogue()
        self.audit = AuditTrail()
        self.position = 0
        self.lock = RLock()

    def fact(self, notification: Notification) -> Fact:
        """Decode one notification into what the views read."""
        state = self.mapper.decode_state(notification)
        if "class_version" in state:
            upcast(resolve_topic(notification.topic), state)
        return Fact(notification.id, notification.originator_version, action_of(notification.topic), state)

    def apply(self, notifications: Iterable[Notification]) -> None:
        """Apply notifications that follow the current position, in order."""
        with self.lock:
            for notification in notifications:
                if notification.id <= self.position:
                    continue
                fact = self.fact(notification)
                self.index.apply(fact)
                self.catalogue.apply(fact)
                self.audit.apply(fact)
                self.position = notification.id

    def catch_up(self, recorder: ApplicationRecorder) -> None:
        """Apply every event recorded after the current position."""
        with self.lock:
            while True:
                page = recorder.select_notifications(start=self.position + 1, limit=PAGE_SIZE)
                if not page:
                    return
                self.apply(page)
