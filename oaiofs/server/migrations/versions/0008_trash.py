"""The server trash: deleted files, folders and objects stay restorable for a retention period.

Revision ID: 0008_trash
Revises: 0005_posix_metadata
"""
from alembic import op
import sqlalchemy as sa


revision = '0008_trash'
down_revision = '0007_history'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'trash',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('object_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('path', sa.String(length=4096), nullable=False),
        sa.Column('path_hash', sa.String(length=64), nullable=False),
        sa.Column('entry_kind', sa.String(length=8), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('first_version', sa.Integer(), nullable=False),
        sa.Column('parent_mtime_ns', sa.BigInteger(), nullable=True),
        sa.Column('files', sa.Integer(), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('deleted', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deleted_by', sa.String(length=150), nullable=False),
        sa.ForeignKeyConstraint(['object_id'], ['objects.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_trash_object_id', 'trash', ['object_id'])
    op.create_index('ix_trash_deleted', 'trash', ['deleted'])
    op.create_index('ix_trash_object_path', 'trash', ['object_id', 'path_hash'])
    op.create_index('ix_trash_object_version', 'trash', ['object_id', 'version'])
    op.create_table(
        'trash_files',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('trash_id', sa.Integer(), nullable=False),
        sa.Column('path', sa.String(length=4096), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=True),
        sa.Column('blob_key', sa.String(length=255), nullable=True),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('mtime', sa.Float(), nullable=False),
        sa.Column('mtime_ns', sa.BigInteger(), nullable=False),
        sa.Column('mode', sa.Integer(), nullable=False),
        sa.Column('target', sa.String(length=4096), nullable=True),
        sa.ForeignKeyConstraint(['trash_id'], ['trash.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_trash_files_trash_id', 'trash_files', ['trash_id'])
    op.create_index('ix_trash_files_blob_key', 'trash_files', ['blob_key'])


def downgrade() -> None:
    op.drop_index('ix_trash_files_blob_key', table_name='trash_files')
    op.drop_index('ix_trash_files_trash_id', table_name='trash_files')
    op.drop_table('trash_files')
    op.drop_index('ix_trash_object_version', table_name='trash')
    op.drop_index('ix_trash_object_path', table_name='trash')
    op.drop_index('ix_trash_deleted', table_name='trash')
    op.drop_index('ix_trash_object_id', table_name='trash')
    op.drop_table('trash')
