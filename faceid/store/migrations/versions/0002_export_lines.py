"""export lines: each case's CSV export line, rendered at write time

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

The table starts empty: ``faceid db upgrade`` renders the lines after migrating (the export
renders missing lines on the fly meanwhile, so nothing is wrong before that, only slower).
Rendering is application code that changes; a migration must not run it.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401 - column types
from alembic import op

from faceid.store import triggers

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'export_lines',
        sa.Column('verification_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('renderer', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('line', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['verification_id'], ['verifications.id'], ),
        sa.PrimaryKeyConstraint('verification_id'),
    )
    triggers.install_export_lines(op.get_bind())


def downgrade() -> None:
    triggers.drop_export_lines(op.get_bind())
    op.drop_table('export_lines')
