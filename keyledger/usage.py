"""Last-used times: when each key last verified, recorded off the hot path.

Verification adds a secret to :attr:`UsageRecorder.pending` the first time it is used in
a flush window (a dict membership test otherwise, no clock read); a daemon thread writes
the pending uses to the side table every :data:`FLUSH_INTERVAL` seconds and when the
ledger closes, at most once a minute per key. The side table is not part of the ledger:
it is not hash-chained, and a rebuild keeps it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from keyledger.projections.ports import ViewStore
from keyledger.projections.valid_keys import Principal

RESOLUTION = timedelta(minutes=1)
FLUSH_INTERVAL = 1.0
logger = logging.getLogger("keyledger")


class UsageRecorder:
    """Collects verified uses and writes them to the views' last-used table."""

    def __init__(self, store: ViewStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock
        self.pending: dict[bytes, tuple[Principal, datetime]] = {}
        """Secrets used since the last flush, with their first use in this window."""
        self._written: dict[tuple[str, str], datetime] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, digest: bytes, principal: Principal) -> None:
        """Note the first use of a secret in this flush window (callers skip it when
        ``digest`` is already in :attr:`pending`)."""
        self.pending[digest] = (principal, self._clock())
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="keyledger-usage", daemon=True)
                    self._thread.start()

    def flush(self) -> None:
        """Write the pending uses now, at most one a minute per key."""
        with self._lock:
            batch = list(self.pending.values())
            self.pending.clear()
            latest: dict[tuple[str, str], datetime] = {}
            for principal, when in batch:
                key = (principal.account, principal.key_id)
                if key not in latest or latest[key] < when:
                    latest[key] = when
            uses = []
            for key, when in latest.items():
                written = self._written.get(key)
                if written is None or when - written >= RESOLUTION:
                    self._written[key] = when
                    uses.append((key[0], key[1], when))
        if uses:
            try:
                self._store.record_use(uses)
            except Exception as error:
                logger.warning("last-used times not written: %s", type(error).__name__)

    def _run(self) -> None:
        while not self._stopping.wait(FLUSH_INTERVAL):
            self.flush()

    def stop(self) -> None:
        """Stop the writer thread and write what is left."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
