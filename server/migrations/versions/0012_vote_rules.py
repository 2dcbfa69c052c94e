"""vote rules: the body's rule set, each vote's base, threshold, kind and time limit; the
procedure's pause

Revision ID: 0012_vote_rules
Revises: 0010
Create Date: 2026-12-06 22:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0012_vote_rules'
down_revision = '0010'  # its own branch (server.core.migrate upgrades every head)
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Meetings and votes from before keep what they meant: "other meetings" (a majority of
    # the members), a motion without a time limit.
    with op.batch_alter_table('procedurestate') as batch:
        batch.add_column(sa.Column('rule_set', sa.String(length=32), nullable=False,
                                   server_default='other'))
        batch.add_column(sa.Column('paused_at', sqlmodel.sql.sqltypes.UTCDateTime(),
                                   nullable=True))
    with op.batch_alter_table('vote') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=32), nullable=False,
                                   server_default='motion'))
        batch.add_column(sa.Column('base', sa.String(length=32), nullable=False,
                                   server_default='all_members'))
        batch.add_column(sa.Column('threshold', sa.String(length=32), nullable=False,
                                   server_default='majority'))
        batch.add_column(sa.Column('closes_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('vote') as batch:
        for name in ('closes_at', 'threshold', 'base', 'kind'):
            batch.drop_column(name)
    with op.batch_alter_table('procedurestate') as batch:
        batch.drop_column('paused_at')
        batch.drop_column('rule_set')
