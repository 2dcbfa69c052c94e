"""meeting node seats: how many voting members an invited cascade node may report

Revision ID: 0009
Revises: 0007
Create Date: 2027-01-12 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nodes invited before seats existed may report no members until their owner allots
    # some (docs/cascade.md, "Headcounts").
    with op.batch_alter_table('meetingnode') as batch:
        batch.add_column(sa.Column('seats', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('meetingnode') as batch:
        batch.drop_column('seats')
