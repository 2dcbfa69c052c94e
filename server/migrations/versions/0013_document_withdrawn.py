"""document withdrawn: a published document taken back (no new version until it is published again)

Revision ID: 0013_document_withdrawn
Revises: 0003
Create Date: 2026-12-06 22:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0013_document_withdrawn'
down_revision = '0003'  # its own branch (server.core.migrate upgrades every head)
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('document') as batch:
        batch.add_column(sa.Column('withdrawn', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('document') as batch:
        batch.drop_column('withdrawn')
