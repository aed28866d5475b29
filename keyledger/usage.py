"""Last-used times: when each key last verified, recorded off the hot path.

Verification notes a use in a dict at most once a minute per key (a dict lookup and a
comparison otherwise); a daemon thread writes the noted uses to the side table every
:data:`FLUSH_INTERVAL` seconds and when the ledger closes. The side table is not part
of the ledger: it is not hash-chained, and a rebuild keeps it.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from keyledger.projections.ports import ViewStore

RESOLUTION = timedelta(minutes=1)
FLUSH_INTERVAL = 1.0
logger = logging.getLogger("keyledger")


class UsageRecorder:
    """Collects verified uses and writes them to the views' last-used table."""

    def __init__(self, store: ViewStore) -> None:
        self._store = store
        self._noted: dict[tuple[str, str], datetime] = {}
        self._pending: dict[tuple[str, str], datetime] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, account: str, key_id: str, now: datetime) -> None:
        """Note a use; cheap unless this key's last note is a minute old."""
        key = (account, key_id)
        last = self._noted.get(key)
        if last is not None and now - last < RESOLUTION:
            return
        with self._lock:
            self._noted[key] = now
            self._pending[key] = now
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="keyledger-usage", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        """Write the noted uses now."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            try:
                self._store.record_use((a, k, when) for (a, k), when in pending.items())
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
