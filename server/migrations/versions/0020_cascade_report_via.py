"""cascade report via: the child link each stored report came through (issue 13: a
per-child share of an intermediate node's outbox)

Revision ID: 0020_cascade_report_via
Revises: 0013_cascade_state
Create Date: 2026-12-07 20:20:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0020_cascade_report_via'
down_revision = '0013_cascade_state'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows stored before count as this node's own (None): never refused, counted node-wide.
    op.add_column('cascadereport',
                  sa.Column('via', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column('cascadereport', 'via')
