"""Database engine, sessions and migrations, all built from settings on demand.

Nothing connects at import time: :func:`create_db_engine` builds an engine for a URL
(SQLite file by default, PostgreSQL through psycopg 3 by URL) and :class:`Database`
bundles it with a session factory. :func:`upgrade_database` runs ``alembic upgrade head``
with the migration scripts shipped inside the package, from any working folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ucvgl.shared.config import Settings

PACKAGE_DIR = Path(__file__).resolve().parents[1]
ALEMBIC_INI = PACKAGE_DIR / "alembic.ini"
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Turn on foreign keys, WAL and a busy timeout for each new SQLite connection."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url``; SQLite files get WAL + foreign keys, their folder is created.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:////abs/ucvgl.sqlite`` or
            ``postgresql+psycopg://postgres@127.0.0.1:5432/test``.
        echo: log every SQL statement.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, echo=echo, pool_pre_ping=True)


@dataclass
class Database:
    """An engine and its session factory (``expire_on_commit=False``)."""

    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def from_url(cls, url: str) -> Database:
        """A :class:`Database` for ``url``."""
        engine = create_db_engine(url)
        return cls(engine, sessionmaker(engine, expire_on_commit=False))

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """A :class:`Database` for ``settings.resolved_database_url``."""
        return cls.from_url(settings.resolved_database_url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block succeeds and rolls back when it raises."""
        with self.sessions() as session, session.begin():
            yield session

    def ping(self) -> None:
        """Run ``SELECT 1``; raises the driver's error when the database is unreachable."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def alembic_config(url: str) -> Any:
    """An Alembic ``Config`` for ``url`` using the migration scripts inside the package."""
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal '%' in a URL must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(url: str, revision: str = "head") -> None:
    """Run ``alembic upgrade <revision>`` on ``url`` (creates the SQLite folder if needed)."""
    from alembic import command

    create_db_engine(url).dispose()  # creates the SQLite file's folder
    command.upgrade(alembic_config(url), revision)


def downgrade_database(url: str, revision: str = "base") -> None:
    """Run ``alembic downgrade <revision>`` on ``url``."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The Alembic revision the database at ``url`` is at, or None when unversioned."""
    from alembic.runtime.migration import MigrationContext

    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
