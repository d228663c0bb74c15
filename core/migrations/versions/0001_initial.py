"""initial tables: video, video_event, batch, idempotency_key

Revision ID: 0001
Revises: 
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('batch',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('cancelled_at', sa.Float(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('metadata_json', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('id')
    )
    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.create_index('ix_batch_tenant_seq', ['tenant', 'seq'], unique=False)

    op.create_table('idempotency_key',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('body_sha256', sa.String(length=64), nullable=False),
    sa.Column('object_id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'key')
    )
    op.create_table('video',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('batch_id', sa.String(length=40), nullable=True),
    sa.Column('batch_row', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('progress', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('negative_prompt', sa.Text(), server_default='', nullable=False),
    sa.Column('num_frames', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('fps', sa.Integer(), nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('num_inference_steps', sa.Integer(), nullable=False),
    sa.Column('guidance_scale', sa.Float(), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('queue', sa.String(length=32), nullable=False),
    sa.Column('metadata_json', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('completed_at', sa.Float(), nullable=True),
    sa.Column('expires_at', sa.Float(), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('job_name', sa.String(length=63), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('queue_position', sa.Integer(), nullable=True),
    sa.Column('node', sa.String(length=253), nullable=True),
    sa.Column('bytes', sa.BigInteger(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('gpu', sa.String(length=128), nullable=True),
    sa.Column('timings', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('id')
    )
    with op.batch_alter_table('video', schema=None) as batch_op:
        batch_op.create_index('ix_video_batch_seq', ['batch_id', 'seq'], unique=False)
        batch_op.create_index('ix_video_job_name', ['job_name'], unique=False)
        batch_op.create_index('ix_video_status_seq', ['status', 'seq'], unique=False)
        batch_op.create_index('ix_video_tenant_seq', ['tenant', 'seq'], unique=False)

    op.create_table('video_event',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('video_id', sa.String(length=40), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('video_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_video_event_video_id'), ['video_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('video_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_video_event_video_id'))

    op.drop_table('video_event')
    with op.batch_alter_table('video', schema=None) as batch_op:
        batch_op.drop_index('ix_video_tenant_seq')
        batch_op.drop_index('ix_video_status_seq')
        batch_op.drop_index('ix_video_job_name')
        batch_op.drop_index('ix_video_batch_seq')

    op.drop_table('video')
    op.drop_table('idempotency_key')
    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.drop_index('ix_batch_tenant_seq')

    op.drop_table('batch')
