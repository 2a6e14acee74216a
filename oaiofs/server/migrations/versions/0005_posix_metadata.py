"""POSIX metadata of files and folders: permission bits, mtime in nanoseconds, symbolic links.

Existing files get mode 0644 (folders 0755) and their current mtime in nanoseconds.

Revision ID: 0005_posix_metadata
Revises: 0004_users_disabled
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_posix_metadata'
down_revision = '0004_users_disabled'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mode', sa.Integer(), nullable=False, server_default='420'))
        batch_op.add_column(sa.Column('mtime_ns', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('target', sa.String(length=4096), nullable=True))
    files = sa.table('files', sa.column('kind', sa.String), sa.column('mode', sa.Integer),
                     sa.column('mtime', sa.Float), sa.column('mtime_ns', sa.BigInteger))
    op.execute(files.update().where(files.c.kind == 'dir').values(mode=0o755))
    # microseconds (what a float of seconds holds), then exact integer nanoseconds
    op.execute(files.update().values(mtime_ns=sa.cast(sa.func.round(files.c.mtime * 1000000), sa.BigInteger)
                                     * 1000))
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.alter_column('mode', server_default=None)
        batch_op.alter_column('mtime_ns', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_column('target')
        batch_op.drop_column('mtime_ns')
        batch_op.drop_column('mode')
