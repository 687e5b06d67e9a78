"""Alembic environment: the URL comes from ``sqlalchemy.url``, ``-x url=...`` or settings."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from ucvgl.shared.db import create_db_engine
from ucvgl.shared.models import Base

config = context.config
# Configure logging only when run from the alembic command line; ``ucvgl serve`` keeps its own.
if config.cmd_opts is not None and config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if url:
        return url
    from ucvgl.shared.config import get_settings

    return get_settings().resolved_database_url


def run_migrations_offline() -> None:
    """Emit SQL to stdout without a connection (``alembic upgrade head --sql``)."""
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on a live connection (SQLite uses batch mode for ALTERs)."""
    engine = create_db_engine(_database_url())
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
