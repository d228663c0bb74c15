"""the x264 quality of a video's MP4

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('video', schema=None) as batch_op:
        batch_op.add_column(sa.Column('crf', sa.Integer(), nullable=False, server_default='18'))


def downgrade() -> None:
    with op.batch_alter_table('video', schema=None) as batch_op:
        batch_op.drop_column('crf')
