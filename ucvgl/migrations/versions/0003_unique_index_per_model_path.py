"""One index row per (model, folder): duplicates removed, then a unique constraint.

Databases made before index recording became idempotent may hold several rows for one
``(model_id, path)``; the newest (``created_at``, then the highest id) is kept.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

CONSTRAINT = "uq_indexes_model_path"


def _delete_duplicates() -> int | None:
    """Delete every index row that a newer row of the same (model_id, path) supersedes.

    Returns how many rows went, or None when only SQL is written (``alembic upgrade --sql``).
    """
    indexes = sa.table(
        "indexes",
        sa.column("id", sa.Integer()),
        sa.column("model_id", sa.Integer()),
        sa.column("path", sa.Text()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    newer = indexes.alias("newer")
    superseded = sa.exists().where(
        newer.c.model_id == indexes.c.model_id,
        newer.c.path == indexes.c.path,
        sa.or_(
            newer.c.created_at > indexes.c.created_at,
            sa.and_(newer.c.created_at == indexes.c.created_at, newer.c.id > indexes.c.id),
        ),
    )
    delete = sa.delete(indexes).where(superseded)
    if context.is_offline_mode():
        op.execute(delete)
        return None
    return op.get_bind().execute(delete).rowcount


def upgrade() -> None:
    removed = _delete_duplicates()
    if removed:
        log.info("removed %d duplicate index row(s), kept the newest of each folder", removed)
    with op.batch_alter_table("indexes") as batch:
        batch.create_unique_constraint(CONSTRAINT, ["model_id", "path"])


def downgrade() -> None:
    with op.batch_alter_table("indexes") as batch:
        batch.drop_constraint(CONSTRAINT, type_="unique")
