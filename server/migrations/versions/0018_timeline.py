"""timeline: a meeting's recordings and the ordered log beside their tracks (issue 16)

Revision ID: 0018_timeline
Revises: 0001
Create Date: 2026-12-07 01:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0018_timeline'
down_revision = '0001'  # its own branch (server.core.migrate upgrades every head)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('recording',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('directory', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('stopped_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('started_by', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['meeting_id'], ['meeting.id'], ),
    sa.ForeignKeyConstraint(['started_by'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('recording', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recording_meeting_id'), ['meeting_id'],
                              unique=False)
    op.create_table('timelineentry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recording_id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('offset_ms', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('data_json', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['recording_id'], ['recording.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('timelineentry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_timelineentry_recording_id'), ['recording_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('timelineentry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_timelineentry_recording_id'))
    op.drop_table('timelineentry')
    with op.batch_alter_table('recording', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recording_meeting_id'))
    op.drop_table('recording')
