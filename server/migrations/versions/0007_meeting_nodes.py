"""meeting nodes: child cascade nodes invited to a meeting

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-27 13:10:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('meetingnode',
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.ForeignKeyConstraint(['meeting_id'], ['meeting.id'], ),
    sa.PrimaryKeyConstraint('meeting_id', 'unit')
    )


def downgrade() -> None:
    op.drop_table('meetingnode')
