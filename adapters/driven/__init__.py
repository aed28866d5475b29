"""What the ledger drives: stores, SQL and in-memory views, the event encoding and the
account locks across processes."""
