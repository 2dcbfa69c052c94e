"""cascade procedure: other nodes' ballots and attendance, floor requests' origins, ids of
other nodes' rows

Revision ID: 0015_cascade_procedure
Revises: 0002
Create Date: 2026-12-06 22:10:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0015_cascade_procedure'
down_revision = '0002'  # its own branch (server.core.migrate upgrades every head)
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table('remotevotetally',
    sa.Column('vote_id', sa.Integer(), nullable=False),
    sa.Column('origin', _str(length=64), nullable=False),
    sa.Column('via', _str(length=64), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('members', sa.Integer(), nullable=False),
    sa.Column('present', sa.Integer(), nullable=False),
    sa.Column('cast', sa.Integer(), nullable=False),
    sa.Column('not_voted', sa.Integer(), nullable=False),
    sa.Column('counts_json', sa.Text(), nullable=False),
    sa.Column('names_json', sa.Text(), nullable=False),
    sa.Column('final', sa.Boolean(), nullable=False),
    sa.Column('late', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['vote_id'], ['vote.id'], ),
    sa.PrimaryKeyConstraint('vote_id', 'origin')
    )
    op.create_table('floororigin',
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('origin', _str(length=64), nullable=False),
    sa.Column('remote_id', sa.Integer(), nullable=False),
    sa.Column('site', _str(length=200), nullable=False),
    sa.Column('unit', _str(length=200), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['floorrequest.id'], ),
    sa.PrimaryKeyConstraint('request_id')
    )
    op.create_table('cascaderef',
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('ref', _str(length=120), nullable=False),
    sa.Column('local_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['meeting_id'], ['meeting.id'], ),
    sa.PrimaryKeyConstraint('meeting_id', 'ref')
    )
    op.create_table('remoteattendance',
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('origin', _str(length=64), nullable=False),
    sa.Column('via', _str(length=64), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('people_json', sa.Text(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['meeting_id'], ['meeting.id'], ),
    sa.PrimaryKeyConstraint('meeting_id', 'origin')
    )


def downgrade() -> None:
    op.drop_table('remoteattendance')
    op.drop_table('cascaderef')
    op.drop_table('floororigin')
    op.drop_table('remotevotetally')
