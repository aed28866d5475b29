"""The shape of the package: what the domain may import, the public API, the error tree."""

from __future__ import annotations

import ast
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import keyledger
from keyledger.domain import EVENT_CLASSES, Keyring, errors

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "domain"
DOMAIN_PACKAGE = "keyledger.domain"
ALLOWED_THIRD_PARTY = ("pydantic", "eventsourcing.domain", DOMAIN_PACKAGE)


def is_allowed(module: str) -> bool:
    """Whether the domain may import ``module``: stdlib, pydantic, eventsourcing.domain or itself."""
    if module.partition(".")[0] in sys.stdlib_module_names:
        return True
    return any(module == allowed or module.startswith(allowed + ".") for allowed in ALLOWED_THIRD_PARTY)


def resolve(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a ``from ... import`` names, relative ones resolved against ``package``."""
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)] if node.level - 1 < len(parts) else []
    return ".".join([*base, node.module] if node.module else base)


def imports_in(source: str, package: str) -> Iterator[tuple[int, str]]:
    """Every module an import statement in ``source`` names, with its line number.

    ``from a import b`` counts as importing ``a.b`` when ``a`` itself is not allowed, so
    ``from eventsourcing import domain`` passes and ``from eventsourcing import application``
    does not.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            module = resolve(node, package)
            if is_allowed(module) or not module:
                yield node.lineno, module or "."
            else:
                for alias in node.names:
                    yield node.lineno, f"{module}.{alias.name}"


def forbidden_imports(source: str, package: str = DOMAIN_PACKAGE) -> list[tuple[int, str]]:
    """The imports in ``source`` the domain must not make."""
    return [(line, module) for line, module in imports_in(source, package) if not is_allowed(module)]


def domain_files() -> list[Path]:
    return sorted(DOMAIN.rglob("*.py"))


def error_classes() -> list[type[errors.KeyLedgerError]]:
    """Every public error class defined in the errors module, the root included."""
    return [
        value
        for name, value in vars(errors).items()
        if not name.startswith("_")
        and inspect.isclass(value)
        and issubclass(value, errors.KeyLedgerError)
        and value.__module__ == errors.__name__
    ]


def isort_style(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps ``__all__`` in: CONSTANTS, then Classes, then the rest."""
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


class TestDomainImports:
    def test_the_domain_has_modules_to_scan(self) -> None:
        """The scan finds the domain's modules, so a passing scan means something."""
        names = {path.name for path in domain_files()}

        assert {"__init__.py", "keyring.py", "keys.py", "errors.py"} <= names

    @pytest.mark.parametrize("path", domain_files(), ids=lambda path: path.name)
    def test_a_domain_module_imports_only_what_the_domain_may(self, path: Path) -> None:
        """A domain module imports only the stdlib, pydantic, eventsourcing.domain and the domain."""
        package = DOMAIN_PACKAGE + "".join(f".{part}" for part in path.relative_to(DOMAIN).parent.parts)

        found = forbidden_imports(path.read_text(encoding="utf-8"), package)

        assert found == [], f"{path.relative_to(ROOT)} imports {found}"

    @pytest.mark.parametrize(
        "source",
        [
            "import orjson",
            "from eventsourcing.application import Application",
            "from eventsourcing import application",
            "import eventsourcing.persistence",
            "from keyledger.ledger import Ledger",
            "from keyledger import Ledger",
            "from keyledger.projections.audit import AuditEntry",
            "from .. import ledger",
            "from ..adapters import stores",
            "def f():\n    import sqlalchemy",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import psycopg",
        ],
    )
    def test_the_scan_catches_a_forbidden_import(self, source: str) -> None:
        """The scan reports an import from outside what the domain may use, wherever it sits."""
        assert forbidden_imports(source) != []

    @pytest.mark.parametrize(
        "source",
        [
            "from __future__ import annotations",
            "import hashlib, secrets",
            "from collections.abc import Iterable",
            "from pydantic import BaseModel",
            "from pydantic.functional_validators import field_validator",
            "from eventsourcing.domain import OriginatorVersionError",
            "from eventsourcing import domain",
            "from keyledger.domain.errors import InvalidInput",
            "from keyledger.domain import keys",
            "from . import errors",
            "from .chain import link",
        ],
    )
    def test_the_scan_accepts_an_allowed_import(self, source: str) -> None:
        """The scan lets through the standard library, pydantic, eventsourcing.domain and the domain."""
        assert forbidden_imports(source) == []


class TestPublicApi:
    def test_all_is_sorted(self) -> None:
        """``keyledger.__all__`` is sorted: constants, then classes, each alphabetically."""
        names = list(keyledger.__all__)

        assert names == sorted(names, key=isort_style)

    def test_all_has_no_duplicates(self) -> None:
        """Every name appears once in ``keyledger.__all__``."""
        assert len(set(keyledger.__all__)) == len(keyledger.__all__)

    def test_every_name_in_all_exists(self) -> None:
        """Every name ``keyledger.__all__`` lists can be imported from keyledger."""
        missing = [name for name in keyledger.__all__ if not hasattr(keyledger, name)]

        assert missing == []

    def test_the_scan_finds_the_error_classes(self) -> None:
        """The errors module defines the root and the errors the design names."""
        names = {cls.__name__ for cls in error_classes()}

        assert {"KeyLedgerError", "InvalidInput", "PermissionDenied", "KeyNotFound"} <= names

    @pytest.mark.parametrize("error", error_classes(), ids=lambda cls: cls.__name__)
    def test_every_error_is_exported(self, error: type[Exception]) -> None:
        """Every public error class of the domain is exported from keyledger, as the same class."""
        assert error.__name__ in keyledger.__all__
        assert getattr(keyledger, error.__name__) is error

    @pytest.mark.parametrize("error", error_classes(), ids=lambda cls: cls.__name__)
    def test_every_error_derives_from_the_root(self, error: type[Exception]) -> None:
        """Every error class is the root or a direct child of it, keeping the tree shallow."""
        assert error is errors.KeyLedgerError or errors.KeyLedgerError in error.__bases__


class TestErrorTree:
    def test_there_are_events_to_compare_with(self) -> None:
        """EVENT_CLASSES lists the six events of the design."""
        assert {cls.__name__ for cls in EVENT_CLASSES} == {
            "KeyCreated",
            "KeyRegenerated",
            "GraceExpired",
            "KeyRevoked",
            "UserAccessRevoked",
            "UserAccessRestored",
        }

    def test_no_error_shares_a_name_with_an_event(self) -> None:
        """No error class is named like an event class."""
        event_names = {cls.__name__ for cls in EVENT_CLASSES} | {Keyring.Event.__name__}
        error_names = {cls.__name__ for cls in error_classes()}

        assert error_names & event_names == set()

    @pytest.mark.parametrize("error", error_classes(), ids=lambda cls: cls.__name__)
    def test_every_error_has_a_docstring(self, error: type[Exception]) -> None:
        """Every error class has a docstring of its own."""
        docstring = error.__dict__.get("__doc__")

        assert isinstance(docstring, str)
        assert docstring.strip()

    @pytest.mark.parametrize("error", error_classes(), ids=lambda cls: cls.__name__)
    def test_the_module_docstring_draws_every_error(self, error: type[Exception]) -> None:
        """The tree drawn in the errors module's docstring names every error class."""
        assert errors.__doc__ is not None

        assert error.__name__ in errors.__doc__
