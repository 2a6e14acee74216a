"""users.disabled: an administrator can disable an account (token and Basic auth answer 401).

Revision ID: 0004_users_disabled
Revises: 0003_blob_gc
"""
from alembic import op
import sqlalchemy as sa


revision = '0004_users_disabled'
down_revision = '0003_blob_gc'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disabled', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('disabled')
