"""Version history: ``file_versions`` (every committed file version) and ``values_versions``.

The current version of every stored file and the current values of every object are copied in
(author unknown, time of the upgrade), so each has a history from the upgrade on.

Revision ID: 0007_history
Revises: 0005_posix_metadata
"""
from alembic import op
import sqlalchemy as sa


revision = '0007_history'
down_revision = '0005_posix_metadata'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('file_versions',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('object_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=4096), nullable=False),
    sa.Column('path_hash', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('blob_key', sa.String(length=255), nullable=False),
    sa.Column('mode', sa.Integer(), nullable=False),
    sa.Column('mtime_ns', sa.BigInteger(), nullable=False),
    sa.Column('author', sa.String(length=150), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('restored_from', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['object_id'], ['objects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('file_versions', schema=None) as batch_op:
        batch_op.create_index('ix_file_versions_file', ['object_id', 'path_hash', 'version'], unique=False)
        batch_op.create_index(batch_op.f('ix_file_versions_blob_key'), ['blob_key'], unique=False)

    op.create_table('values_versions',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('object_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('values_json', sa.Text(), nullable=False),
    sa.Column('author', sa.String(length=150), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('restored_from', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['object_id'], ['objects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('values_versions', schema=None) as batch_op:
        batch_op.create_index('ix_values_versions_object', ['object_id', 'version'], unique=False)

    # the current state becomes the first entry of each history
    op.execute(sa.text(
        "INSERT INTO file_versions (object_id, path, path_hash, version, size, sha256, blob_key, mode, mtime_ns,"
        " created) SELECT object_id, path, path_hash, version, size, sha256, blob_key, mode, mtime_ns, "
        "CURRENT_TIMESTAMP FROM files WHERE kind = 'file' AND blob_key IS NOT NULL AND sha256 IS NOT NULL"))
    op.execute(sa.text(
        "INSERT INTO values_versions (object_id, version, values_json, created) "
        "SELECT id, version, values_json, CURRENT_TIMESTAMP FROM objects WHERE deleted IS NULL"))


def downgrade() -> None:
    with op.batch_alter_table('values_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_values_versions_object')
    op.drop_table('values_versions')
    with op.batch_alter_table('file_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_file_versions_blob_key'))
        batch_op.drop_index('ix_file_versions_file')
    op.drop_table('file_versions')
