"""sealed ballots: secret ballots sealed while their vote is open, ordered by receipt after

Revision ID: 0010
Revises: 0006
Create Date: 2027-01-14 09:00:00

`sealedballot` holds a secret vote's ballots while it is open (encrypted under the ballot
key, rooms/ballot_seal.py). `voteballot` loses its random id: its key becomes (vote_id,
receipt_hash), and the rows already there are copied in that order into a new table, so the
old table's pages (whose layout kept the order ballots were cast in) are dropped whole. On
SQLite the connection runs with secure_delete, so those pages are zeroed; the server
checkpoints and truncates the WAL after start-up (server/procedure/live.py).

A secret vote left open across this upgrade keeps its ballots as plain `voteballot` rows
until it closes; rooms/votes.py reads them with the sealed ones and changes them into
sealed ones.
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0010'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('vote', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seal_key_id', sqlmodel.sql.sqltypes.AutoString(length=16),
                                      nullable=True))
    op.create_table('sealedballot',
    sa.Column('vote_id', sa.Integer(), nullable=False),
    sa.Column('lookup', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('sealed', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['vote_id'], ['vote.id'], ),
    sa.PrimaryKeyConstraint('vote_id', 'lookup'),
    sqlite_with_rowid=False
    )
    _replace_voteballot(new_key=True)


def downgrade() -> None:
    # Sealed ballots open only with the ballot key, which a migration does not have.
    if op.get_bind().execute(sa.text('SELECT count(*) FROM sealedballot')).scalar():
        raise RuntimeError('a secret vote is open: close it before downgrading')
    op.drop_table('sealedballot')
    with op.batch_alter_table('vote', schema=None) as batch_op:
        batch_op.drop_column('seal_key_id')
    _replace_voteballot(new_key=False)


def _replace_voteballot(new_key: bool) -> None:
    # Index names are per schema on PostgreSQL: move the old ones out of the way first.
    op.rename_table('voteballot', 'voteballot_old')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER INDEX uq_ballot_receipt RENAME TO uq_ballot_receipt_old')
        op.execute('DROP INDEX IF EXISTS ix_voteballot_vote_id')
    else:
        op.execute('DROP INDEX IF EXISTS ix_voteballot_vote_id')
    if new_key:
        op.create_table('voteballot',
        sa.Column('vote_id', sa.Integer(), nullable=False),
        sa.Column('receipt_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('option', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['vote_id'], ['vote.id'], ),
        sa.PrimaryKeyConstraint('vote_id', 'receipt_hash'),
        sa.UniqueConstraint('receipt_hash', name='uq_ballot_receipt'),
        sqlite_with_rowid=False
        )
        op.execute('INSERT INTO voteballot (vote_id, receipt_hash, option) '
                   'SELECT vote_id, receipt_hash, option FROM voteballot_old '
                   'ORDER BY vote_id, receipt_hash')
    else:
        op.create_table('voteballot',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('vote_id', sa.Integer(), nullable=False),
        sa.Column('option', sa.Integer(), nullable=False),
        sa.Column('receipt_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(['vote_id'], ['vote.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('receipt_hash', name='uq_ballot_receipt'),
        sqlite_with_rowid=False
        )
        op.create_index('ix_voteballot_vote_id', 'voteballot', ['vote_id'], unique=False)
        # The id was a random UUID; receipt hashes are random too, and unique.
        op.execute('INSERT INTO voteballot (id, vote_id, option, receipt_hash) '
                   'SELECT substr(receipt_hash, 1, 32), vote_id, option, receipt_hash '
                   'FROM voteballot_old ORDER BY receipt_hash')
    op.drop_table('voteballot_old')
