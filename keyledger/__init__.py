"""keyledger: an event-sourced ledger of API-key lifecycles for Python backends.

>>> from keyledger import Ledger, Actor, Permission
>>> ledger = Ledger.open("memory://")
>>> alice = Actor(user_id="alice", account="acme", permissions={Permission.INTEGRATION})
>>> issued = ledger.create_key(alice, name="Shipping", application="ShipStation")
>>> ledger.verify(issued.secret.get_secret_value()).key_id == issued.key_id
True
"""

from __future__ import annotations

from keyledger.domain import (
    DEFAULT_ACCOUNT,
    AccessRevoked,
    Actor,
    Conflict,
    FrozenLedger,
    IntegrityViolation,
    InvalidInput,
    KeyAlreadyRevoked,
    KeyLedgerError,
    KeyNotFound,
    Permission,
    PermissionDenied,
    StoreUnavailable,
    UserAccessUnchanged,
)
from keyledger.export import ExportCheckpoint, ExportReport, verify_export
from keyledger.ledger import Ledger
from keyledger.projections.audit import AuditEntry
from keyledger.projections.catalogue import GraceSecret, KeyView
from keyledger.report import ComplianceReport
from keyledger.results import (
    AccountHead,
    AccountSummary,
    Checkpoint,
    Health,
    IntegrityReport,
    IssuedKey,
    KeyPage,
    Principal,
)
from keyledger.subscribers import SubscriptionStatus
from keyledger.subscriptions import Subscription
from keyledger.webhook_signing import verify_webhook
from keyledger.webhooks import Webhook, WebhookDelivery

__all__ = [
    "DEFAULT_ACCOUNT",
    "AccessRevoked",
    "AccountHead",
    "AccountSummary",
    "Actor",
    "AuditEntry",
    "Checkpoint",
    "ComplianceReport",
    "Conflict",
    "ExportCheckpoint",
    "ExportReport",
    "FrozenLedger",
    "GraceSecret",
    "Health",
    "IntegrityReport",
    "IntegrityViolation",
    "InvalidInput",
    "IssuedKey",
    "KeyAlreadyRevoked",
    "KeyLedgerError",
    "KeyNotFound",
    "KeyPage",
    "KeyView",
    "Ledger",
    "Permission",
    "PermissionDenied",
    "Principal",
    "StoreUnavailable",
    "Subscription",
    "SubscriptionStatus",
    "UserAccessUnchanged",
    "Webhook",
    "WebhookDelivery",
    "verify_export",
    "verify_webhook",
]
