"""Tables of the ae.oaio_client compatibility layer (compat_ae_objects, compat_ae_staged).

Revision ID: 0002_compat_ae
Revises: 0001_initial
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_compat_ae'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('compat_ae_objects',
    sa.Column('object_id', sa.Integer(), nullable=False),
    sa.Column('client_stamp', sa.String(length=20), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('csh_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['object_id'], ['objects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('object_id')
    )
    op.create_table('compat_ae_staged',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('oaio_id', sa.String(length=255), nullable=False),
    sa.Column('stamp', sa.String(length=20), nullable=False),
    sa.Column('path', sa.String(length=4096), nullable=False),
    sa.Column('blob_key', sa.String(length=255), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('compat_ae_staged', schema=None) as batch_op:
        batch_op.create_index('ix_compat_ae_staged_key', ['oaio_id', 'stamp'], unique=False)
        batch_op.create_index(batch_op.f('ix_compat_ae_staged_user_id'), ['user_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_compat_ae_staged_created'), ['created'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('compat_ae_staged', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_compat_ae_staged_created'))
        batch_op.drop_index(batch_op.f('ix_compat_ae_staged_user_id'))
        batch_op.drop_index('ix_compat_ae_staged_key')
    op.drop_table('compat_ae_staged')
    op.drop_table('compat_ae_objects')
