"""minutes signing: the review of each minutes version and its PAdES signatures (issue 16)

Revision ID: 0019_minutes_signing
Revises: 0002
Create Date: 2026-12-07 01:10:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0019_minutes_signing'
down_revision = '0002'  # its own branch (server.core.migrate upgrades every head)
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
_at = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table('minutesreview',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('stage', sa.Enum('draft', 'reviewed', 'signing', 'signed', name='stage',
                               native_enum=False, length=32), nullable=False),
    sa.Column('drafted_by', sa.Integer(), nullable=False),
    sa.Column('drafted_at', _at(), nullable=False),
    sa.Column('reviewed_by', sa.Integer(), nullable=True),
    sa.Column('reviewed_at', _at(), nullable=True),
    sa.ForeignKeyConstraint(['meeting_id'], ['meeting.id'], ),
    sa.ForeignKeyConstraint(['drafted_by'], ['user.id'], ),
    sa.ForeignKeyConstraint(['reviewed_by'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('meeting_id', 'version', name='uq_minutes_review')
    )
    op.create_index('ix_minutesreview_meeting_id', 'minutesreview', ['meeting_id'])
    op.create_table('minutessignature',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('role', sa.Enum('secretary', 'chair', name='signerrole', native_enum=False,
                              length=32), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('signer', _str(length=300), nullable=False),
    sa.Column('certificate_sha256', _str(length=64), nullable=False),
    sa.Column('key_kind', _str(length=16), nullable=False),
    sa.Column('sha256', _str(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('pdf', sa.LargeBinary(), nullable=False),
    sa.Column('audit_hash', _str(length=64), nullable=False),
    sa.Column('signed_at', _at(), nullable=False),
    sa.ForeignKeyConstraint(['meeting_id'], ['meeting.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('meeting_id', 'version', 'role', name='uq_minutes_signature')
    )
    op.create_index('ix_minutessignature_meeting_id', 'minutessignature', ['meeting_id'])


def downgrade() -> None:
    op.drop_index('ix_minutessignature_meeting_id', 'minutessignature')
    op.drop_table('minutessignature')
    op.drop_index('ix_minutesreview_meeting_id', 'minutesreview')
    op.drop_table('minutesreview')
