"""Store URLs: one URL picks the event store and maps onto eventsourcing's settings.

=====================================  ==================================================
``memory://``                          in this process only (eventsourcing's POPO store)
``sqlite:///relative/path.db``         a SQLite file (``sqlite:////abs/path.db`` absolute)
``postgresql://user:pw@host:5432/db``  PostgreSQL, shared by processes and machines;
                                       ``?schema=name`` puts the tables in that schema
=====================================  ==================================================

With no URL, ``KEYLEDGER_URL`` is used, then ``sqlite:///keyledger.db``.

SQLite runs in WAL mode with SQLite's default ``synchronous=FULL``: a command that
returned survives a power cut. PostgreSQL keeps its server's durability settings.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from keyledger.domain import InvalidInput

DEFAULT_URL = "sqlite:///keyledger.db"
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
URL_VARIABLE = "KEYLEDGER_URL"


@dataclass(frozen=True, repr=False)
class StoreSettings:
    """The store a URL names, as eventsourcing environment settings.

    ``repr`` and ``str`` show :meth:`describe`, never ``env``: it holds the PostgreSQL
    password, and an error tracker that captures frame locals would ship it.
    """

    kind: str
    """``memory``, ``sqlite`` or ``postgresql``."""
    env: dict[str, str] = field(repr=False)

    def __repr__(self) -> str:
        return f"StoreSettings({self.describe()!r})"

    def describe(self) -> str:
        """The store without any password, for messages and logs."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.env['SQLITE_DBNAME']}"
        if self.kind == "postgresql":
            env = self.env
            where = f"{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}/{env['POSTGRES_DBNAME']}"
            schema = f"?schema={env['POSTGRES_SCHEMA']}" if env["POSTGRES_SCHEMA"] else ""
            return f"postgresql://{env['POSTGRES_USER']}@{where}{schema}"
        return "memory://"


def resolve_url(url: str | None = None) -> str:
    """The URL to open: ``url``, else ``KEYLEDGER_URL``, else the SQLite default."""
    return url or os.environ.get(URL_VARIABLE) or DEFAULT_URL


def parse_url(url: str) -> StoreSettings:
    """Map a store URL onto eventsourcing settings; a bad URL raises :class:`InvalidInput`."""
    if not isinstance(url, str) or not url:
        raise InvalidInput("url", "must be a non-empty string")
    scheme, _, rest = url.partition("://")
    if url == "memory://":
        # One process writes a memory:// store, and each save puts the Keyring it wrote in
        # the cache: there is never anything to fast-forward (eventsourcing's POPO recorder
        # would scan the whole stream for it on every command).
        return StoreSettings(
            "memory", {"PERSISTENCE_MODULE": "eventsourcing.popo", "AGGREGATE_CACHE_FASTFORWARD": "n"}
        )
    if scheme == "sqlite":
        if not rest.startswith("/") or len(rest) < 2:
            raise InvalidInput("url", "a SQLite URL reads sqlite:///path/to/file.db")
        path = unquote(rest[1:])
        return StoreSettings(
            "sqlite",
            {
                "PERSISTENCE_MODULE": "keyledger.adapters.driven.sqlite_views:SQLiteStore",
                "SQLITE_DBNAME": path,
                "SQLITE_LOCK_TIMEOUT": "10",
            },
        )
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(url)
        dbname = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not dbname:
            raise InvalidInput(
                "url", "a PostgreSQL URL reads postgresql://user[:password]@host[:port]/dbname"
            )
        try:
            port = parts.port or 5432
        except ValueError:
            raise InvalidInput("url", "the PostgreSQL port must be a number") from None
        schema = parse_qs(parts.query).get("schema", [""])[-1]
        if schema and not _SCHEMA.fullmatch(schema):
            raise InvalidInput("url", "the schema must be a lowercase SQL identifier")
        return StoreSettings(
            "postgresql",
            {
                "POSTGRES_SCHEMA": schema,
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": dbname,
                "POSTGRES_HOST": parts.hostname,
                "POSTGRES_PORT": str(port),
                "POSTGRES_USER": unquote(parts.username or "postgres"),
                "POSTGRES_PASSWORD": unquote(parts.password or ""),
                "POSTGRES_CONNECT_TIMEOUT": "5",
            },
        )
    raise InvalidInput("url", "must start with memory://, sqlite:/// or postgresql://")
