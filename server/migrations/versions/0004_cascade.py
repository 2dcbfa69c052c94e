"""cascade: meetings mirrored from a parent node

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-27 12:50:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0004'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('meeting', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cascade_key', sqlmodel.sql.sqltypes.AutoString(length=160),
                                      nullable=True))
        batch_op.create_index(batch_op.f('ix_meeting_cascade_key'), ['cascade_key'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('meeting', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_meeting_cascade_key'))
        batch_op.drop_column('cascade_key')
