"""Blob garbage collection: the ``blob_gc`` table (unreferenced blobs and since when).

Revision ID: 0003_blob_gc
Revises: 0002_compat_ae
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_blob_gc'
down_revision = '0002_compat_ae'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blob_gc',
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.drop_table('blob_gc')
