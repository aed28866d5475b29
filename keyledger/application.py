"""The eventsourcing application underneath a Ledger: stores, mapper, snapshots.

This is the one place that wires adapters to settings (cosmicpython's bootstrap): the
store URL becomes eventsourcing's environment, the pydantic mapper and the orjson
transcoder are plugged in, and Keyrings are snapshotted every
:data:`SNAPSHOT_INTERVAL` events.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import Mapper, PersistenceError, Transcoder
from eventsourcing.utils import Environment

from keyledger.adapters.transcoding import OrjsonTranscoder, PydanticMapper
from keyledger.domain import Keyring, KeyringSnapshot

SNAPSHOT_INTERVAL = 100
logger = logging.getLogger("keyledger")


class KeyringApplication(Application[UUID]):
    """Stores Keyring events; every Ledger owns one."""

    name = "keyledger"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Keyring: SNAPSHOT_INTERVAL}
    snapshot_class = KeyringSnapshot

    def construct_env(self, name: str, env: Any = None) -> Environment:
        # Only what the Ledger passes: a stray POSTGRES_* or *_SQLITE_DBNAME in the
        # process environment must never redirect the ledger to another store.
        settings = {"IS_SNAPSHOTTING_ENABLED": "y", **(env or {})}
        return Environment(name, settings)

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()

    def construct_mapper(self) -> Mapper[UUID]:
        return self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=PydanticMapper)

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        # A snapshot only speeds up loading; failing to write one must not turn a
        # command whose events are committed into an error.
        try:
            super()._take_snapshots(processing_event)
        except PersistenceError as error:
            logger.warning("snapshot not written: %s", type(error).__name__)
