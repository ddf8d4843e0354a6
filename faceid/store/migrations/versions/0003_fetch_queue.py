"""fetch queue: durable fetch jobs with leases, and the deployment-wide request slots

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Existing databases start with an empty queue: every stored biz_id is already safe (the store
is checked before any job runs), and the ledger still counts the reads spent before.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401 - column types
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'fetch_jobs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('biz_id', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('refetch', sa.Boolean(), nullable=False),
        sa.Column('requested_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column('requested_at', sa.Float(), nullable=False),
        sa.Column('tries', sa.Integer(), nullable=False),
        sa.Column('max_tries', sa.Integer(), nullable=False),
        sa.Column('not_before', sa.Float(), nullable=True),
        sa.Column('lease_owner', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column('lease_until', sa.Float(), nullable=True),
        sa.Column('started_at', sa.Float(), nullable=True),
        sa.Column('finished_at', sa.Float(), nullable=True),
        sa.Column('last_status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column('last_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('last_http_status', sa.Integer(), nullable=True),
        sa.Column('last_message', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=True),
        sa.Column('verification_id', sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('biz_id'),
    )
    with op.batch_alter_table('fetch_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_fetch_jobs_claim', ['state', 'not_before'], unique=False)
    op.create_table(
        'fetch_slots',
        sa.Column('slot', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column('biz_id', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
        sa.Column('acquired_at', sa.Float(), nullable=True),
        sa.Column('lease_until', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('slot'),
    )


def downgrade() -> None:
    op.drop_table('fetch_slots')
    with op.batch_alter_table('fetch_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_fetch_jobs_claim')
    op.drop_table('fetch_jobs')
