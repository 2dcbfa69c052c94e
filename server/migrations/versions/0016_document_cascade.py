"""document cascade: the file of a document that crosses node links, and a mirror's origin

Revision ID: 0016_document_cascade
Revises: 0003
Create Date: 2026-12-06 22:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0016_document_cascade'
down_revision = '0003'  # its own branch (server.core.migrate upgrades every head)
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table('documentcascade',
    sa.Column('document_id', sa.Integer(), nullable=False),
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('origin_id', sa.Integer(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('sha256', _str(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('page1_sha256', _str(length=64), nullable=True),
    sa.Column('page1_size', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['document_id'], ['document.id'], ),
    sa.ForeignKeyConstraint(['meeting_id'], ['meeting.id'], ),
    sa.PrimaryKeyConstraint('document_id'),
    sa.UniqueConstraint('meeting_id', 'origin_id', name='uq_document_origin')
    )
    op.create_index('ix_documentcascade_meeting_id', 'documentcascade', ['meeting_id'])
    op.create_index('ix_documentcascade_sha256', 'documentcascade', ['sha256'])
    op.create_index('ix_documentcascade_page1_sha256', 'documentcascade', ['page1_sha256'])


def downgrade() -> None:
    op.drop_index('ix_documentcascade_page1_sha256', 'documentcascade')
    op.drop_index('ix_documentcascade_sha256', 'documentcascade')
    op.drop_index('ix_documentcascade_meeting_id', 'documentcascade')
    op.drop_table('documentcascade')
