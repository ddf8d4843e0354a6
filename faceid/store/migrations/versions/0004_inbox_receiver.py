"""inbox receiver: which process received a body, so a live import is not "resumed" by another

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Rows received before this revision have no receiver: an import treats them as left behind by
an interrupted run (the behaviour they were written under).
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401 - column types
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('inbox') as batch:
        batch.add_column(sa.Column('receiver', sqlmodel.sql.sqltypes.AutoString(length=128),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('inbox') as batch:
        batch.drop_column('receiver')
