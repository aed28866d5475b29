"""Validation of the values callers pass in: each check returns the value or raises
:class:`InvalidInput` naming the field, before anything is recorded."""

from __future__ import annotations

from typing import Any

from keyledger.domain.errors import InvalidInput

NAME_MAX = 100
PURPOSE_MAX = 1000
APPLICATION_MAX = 100
REASON_MAX = 1000
IDENTIFIER_MAX = 200


def _require_str(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, not {type(value).__name__}")
    return value


def check_identifier(field: str, value: Any) -> str:
    """An account or user id: 1 to 200 characters, no control characters."""
    text = _require_str(field, value)
    if not text or not text.strip():
        raise InvalidInput(field, "must not be empty")
    if len(text) > IDENTIFIER_MAX:
        raise InvalidInput(field, f"must be at most {IDENTIFIER_MAX} characters")
    if not text.isprintable():
        raise InvalidInput(field, "must not contain control characters")
    return text


def check_label(field: str, value: Any, *, maximum: int, required: bool) -> str:
    """A one-line label: printable characters only, at most ``maximum`` of them."""
    text = _require_str(field, value)
    if required and not text.strip():
        raise InvalidInput(field, "must not be empty")
    if len(text) > maximum:
        raise InvalidInput(field, f"must be at most {maximum} characters")
    if not text.isprintable():
        raise InvalidInput(field, "must contain printable characters only")
    return text


def check_notes(field: str, value: Any, *, maximum: int) -> str:
    """Free text: printable characters, newlines and tabs, at most ``maximum``."""
    text = _require_str(field, value)
    if len(text) > maximum:
        raise InvalidInput(field, f"must be at most {maximum} characters")
    if not text.replace("\n", "").replace("\t", "").isprintable():
        raise InvalidInput(field, "must not contain control characters other than newline and tab")
    return text
