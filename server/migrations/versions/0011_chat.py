"""chat: meeting chat messages (to everyone, or to the chair and secretariat)

Revision ID: 0011_chat
Revises: 0001
Create Date: 2026-12-06 22:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0011_chat'
down_revision = '0001'  # its own branch (server.core.migrate upgrades every head)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('chatmessage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('sender_id', sa.Integer(), nullable=False),
    sa.Column('sender_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('audience', sa.String(length=16), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('hidden', sa.Boolean(), nullable=False),
    sa.Column('hidden_by', sa.Integer(), nullable=True),
    sa.Column('hidden_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['meeting_id'], ['meeting.id'], ),
    sa.ForeignKeyConstraint(['sender_id'], ['user.id'], ),
    sa.ForeignKeyConstraint(['hidden_by'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('chatmessage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chatmessage_meeting_id'), ['meeting_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('chatmessage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chatmessage_meeting_id'))
    op.drop_table('chatmessage')
