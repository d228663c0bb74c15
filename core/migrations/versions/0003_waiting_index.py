"""indexes for the line of waiting videos and per-tenant limits

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

WAITING_SQL = "status = 'queued' AND job_name IS NULL"  # frozen copy of core.models.WAITING_SQL


def upgrade() -> None:
    with op.batch_alter_table('video', schema=None) as batch_op:
        batch_op.create_index('ix_video_tenant_status', ['tenant', 'status'], unique=False)
        batch_op.create_index('ix_video_waiting', ['priority', 'seq'], unique=False,
                              sqlite_where=sa.text(WAITING_SQL), postgresql_where=sa.text(WAITING_SQL))


def downgrade() -> None:
    with op.batch_alter_table('video', schema=None) as batch_op:
        batch_op.drop_index('ix_video_waiting')
        batch_op.drop_index('ix_video_tenant_status')
