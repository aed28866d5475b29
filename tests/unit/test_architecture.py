"""The shape of the package: what the domain may import, the public API, the error tree."""

from __future__ import annotations

import ast
import importlib
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


DRIVING = ("asgi", "wsgi", "fastapi", "cli", "cli_common", "cli_review", "render", "demo")
"""Adapters that drive the ledger (``adapters/driving/``): entrypoints for people and web
services."""
DRIVEN = (
    "stores",
    "account_locks",
    "transcoding",
    "sql_views",
    "sqlite_views",
    "postgres_views",
    "memory_views",
)
"""Adapters the ledger drives (``adapters/driven/``): stores, views and the event encoding."""
PUBLISHED = ("asgi", "wsgi", "fastapi", "cli", "console")
"""Driving adapters also importable at ``keyledger.adapters.<name>`` (their published paths)."""
LAYERS: dict[str, tuple[str, ...]] = {
    "domain": ("keyledger.domain",),
    "projections": ("keyledger.domain", "keyledger.projections"),
    "driven": ("keyledger.domain", "keyledger.projections", "keyledger.adapters.driven"),
    "keyledger": (
        "keyledger.domain",
        "keyledger.projections",
        "keyledger.adapters.driven",
        *(f"keyledger.{path.stem}" for path in (ROOT / "keyledger").glob("*.py") if path.stem != "__init__"),
    ),
    "driving": ("keyledger",),
    "published": ("keyledger.adapters.driving",),
}
"""What the modules of each layer may import of keyledger itself (DESIGN.md's layout)."""


def layer_files() -> list[tuple[str, Path]]:
    """Every module of the package with its layer."""
    found = [("domain", path) for path in sorted((ROOT / "domain").glob("*.py"))]
    found += [("projections", path) for path in sorted((ROOT / "projections").glob("*.py"))]
    found += [("keyledger", path) for path in sorted((ROOT / "keyledger").glob("*.py"))]
    found += [("driven", path) for path in sorted((ROOT / "adapters" / "driven").glob("*.py"))]
    found += [("driving", path) for path in sorted((ROOT / "adapters" / "driving").rglob("*.py"))]
    found += [("published", path) for path in sorted((ROOT / "adapters").glob("*.py"))]
    return found


def internal_imports(source: str) -> Iterator[tuple[int, str]]:
    """The modules of keyledger that ``source`` imports (``from keyledger import x``
    counts as ``keyledger.x``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "keyledger":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "keyledger":
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def layer_breaches(layer: str, source: str) -> list[tuple[int, str]]:
    allowed = LAYERS[layer]
    return [
        (line, module)
        for line, module in internal_imports(source)
        if not any(module == prefix or module.startswith(prefix + ".") for prefix in allowed)
    ]


class TestLayers:
    """Every module imports only the layers beneath it: domain, then projections, then
    the driven adapters, then the ledger, then the driving adapters."""

    def test_every_layer_has_modules_to_scan(self) -> None:
        layers = {layer for layer, _ in layer_files()}

        assert layers == set(LAYERS)
        assert {path.stem for _, path in layer_files()} >= {*DRIVING, *DRIVEN, "ledger", "keyring"}

    @pytest.mark.parametrize(
        ("layer", "path"), layer_files(), ids=lambda v: v.name if isinstance(v, Path) else v
    )
    def test_a_module_imports_only_the_layers_beneath_it(self, layer: str, path: Path) -> None:
        found = layer_breaches(layer, path.read_text(encoding="utf-8"))

        assert found == [], f"{path.relative_to(ROOT)} ({layer}) imports {found}"

    @pytest.mark.parametrize(
        ("layer", "source"),
        [
            ("projections", "from keyledger.adapters.driven.sql_views import SQLViews"),
            ("projections", "from keyledger import Ledger"),
            ("driven", "from keyledger.ledger import Ledger"),
            ("driven", "from keyledger.adapters.driving.cli import app"),
            ("driven", "from keyledger import results"),
            ("keyledger", "from keyledger.adapters.driving.asgi import ApiKeyMiddleware"),
            ("keyledger", "import keyledger.adapters.driving.fastapi"),
            ("published", "from keyledger import Ledger"),
        ],
    )
    def test_the_scan_catches_an_import_from_above(self, layer: str, source: str) -> None:
        assert layer_breaches(layer, source) != []

    @pytest.mark.parametrize(
        ("layer", "source"),
        [
            ("projections", "from keyledger.domain.chain import GENESIS"),
            ("driven", "from keyledger.projections.ports import ViewStore"),
            ("driven", "from keyledger.adapters.driven.stores import StoreSettings"),
            ("keyledger", "from keyledger.adapters.driven.transcoding import PydanticMapper"),
            ("keyledger", "from keyledger.results import Health"),
            ("driving", "from keyledger import Ledger"),
        ],
    )
    def test_the_scan_accepts_an_import_from_below(self, layer: str, source: str) -> None:
        assert layer_breaches(layer, source) == []

    @pytest.mark.parametrize("name", PUBLISHED)
    def test_a_published_path_is_the_driving_module_itself(self, name: str) -> None:
        """``keyledger.adapters.asgi`` and the others hand out the very objects of
        ``keyledger.adapters.driving``: one class, whichever path a user imports."""
        published = importlib.import_module(f"keyledger.adapters.{name}")
        driving = importlib.import_module(f"keyledger.adapters.driving.{name}")

        assert published.__all__
        for attribute in published.__all__:
            assert getattr(published, attribute) is getattr(driving, attribute)


class TestProjectionImports:
    @pytest.mark.parametrize("path", sorted((ROOT / "projections").glob("*.py")), ids=lambda path: path.name)
    def test_a_projection_imports_only_the_stdlib_pydantic_and_the_domain(self, path: Path) -> None:
        """Projections are pure: no store, no eventsourcing, no encoding library."""
        outside = [
            (line, module)
            for line, module in imports_in(path.read_text(encoding="utf-8"), "keyledger.projections")
            if module.partition(".")[0] not in sys.stdlib_module_names
            and module.partition(".")[0] != "pydantic"
            and not module.startswith(("keyledger.domain", "keyledger.projections"))
        ]

        assert outside == [], f"{path.relative_to(ROOT)} imports {outside}"
