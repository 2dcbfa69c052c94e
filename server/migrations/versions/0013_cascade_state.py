"""cascade state: the meeting journal, the report outbox and the received reports

Revision ID: 0013_cascade_state
Revises: 0004
Create Date: 2026-12-06 22:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0013_cascade_state'
down_revision = '0004'  # its own branch (server.core.migrate upgrades every head)
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table('cascadeentry',
    sa.Column('key', _str(length=84), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('topic', _str(length=64), nullable=False),
    sa.Column('data', _str(), nullable=False),
    sa.Column('applied', sa.Boolean(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key', 'seq')
    )
    op.create_table('cascadereport',
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('id', _str(length=32), nullable=False),
    sa.Column('key', _str(length=84), nullable=False),
    sa.Column('origin', _str(length=64), nullable=False),
    sa.Column('topic', _str(length=64), nullable=False),
    sa.Column('data', _str(), nullable=False),
    sa.Column('state', _str(length=16), nullable=False),
    sa.Column('reason', _str(length=300), nullable=True),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('n'),
    sa.UniqueConstraint('id')
    )
    op.create_index('ix_cascadereport_key', 'cascadereport', ['key'])
    op.create_index('ix_cascadereport_state', 'cascadereport', ['state'])
    op.create_table('cascadereceived',
    sa.Column('id', _str(length=32), nullable=False),
    sa.Column('key', _str(length=84), nullable=False),
    sa.Column('via', _str(length=64), nullable=False),
    sa.Column('origin', _str(length=64), nullable=False),
    sa.Column('topic', _str(length=64), nullable=False),
    sa.Column('state', _str(length=16), nullable=False),
    sa.Column('result', _str(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('cascadereceived')
    op.drop_index('ix_cascadereport_state', 'cascadereport')
    op.drop_index('ix_cascadereport_key', 'cascadereport')
    op.drop_table('cascadereport')
    op.drop_table('cascadeentry')
