"""Views rebuilt from the ledger: valid keys, the key catalogue and the audit trail."""
