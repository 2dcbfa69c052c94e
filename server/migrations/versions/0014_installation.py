"""installation: the identity of this installation (backups name it; docs/backup.md)

Revision ID: 0014_installation
Revises: 0001
Create Date: 2026-12-06 21:50:00

One row, made here with a random id: every database at this revision has one, whether it
was migrated from nothing or upgraded. A backup records it, and a restore refuses a target
that holds another installation. A copy of the database (a restore, a template) is the same
installation.
"""
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = '0014_installation'
down_revision = '0001'  # its own branch (server.core.migrate upgrades every head)
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        'installation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('installation_id', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.bulk_insert(table, [{"id": 1, "installation_id": uuid.uuid4().hex,
                            "created_at": datetime.now(UTC).replace(tzinfo=None)}])


def downgrade() -> None:
    op.drop_table('installation')
