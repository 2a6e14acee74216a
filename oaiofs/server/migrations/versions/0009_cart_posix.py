"""POSIX metadata of cart members: kind (file or link), permission bits, mtime in ns, link target.

Members of carts made before this revision are regular files with mode 0644 and
their float mtime (``mtime_ns`` 0 means: use ``mtime``).

Revision ID: 0009_cart_posix
Revises: 0008_trash
"""
from alembic import op
import sqlalchemy as sa


revision = '0009_cart_posix'
down_revision = '0008_trash'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cart_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=8), nullable=False, server_default='file'))
        batch_op.add_column(sa.Column('mode', sa.Integer(), nullable=False, server_default='420'))
        batch_op.add_column(sa.Column('mtime_ns', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('target', sa.String(length=4096), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('cart_files', schema=None) as batch_op:
        batch_op.drop_column('target')
        batch_op.drop_column('mtime_ns')
        batch_op.drop_column('mode')
        batch_op.drop_column('kind')
