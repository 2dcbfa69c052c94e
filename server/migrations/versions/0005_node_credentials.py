"""node credentials: child nodes' secrets rotated or revoked by an administrator

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 14:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('nodecredential',
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('secret', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('unit')
    )


def downgrade() -> None:
    op.drop_table('nodecredential')
