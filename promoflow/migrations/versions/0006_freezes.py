"""freezes from the command line; promotions let through freezes and windows, or past the order, by an override

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "freeze",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("environment", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("frozen_by", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("freeze", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_freeze_environment"), ["environment"], unique=False)
    with op.batch_alter_table("promotion", schema=None) as batch_op:
        batch_op.add_column(sa.Column("overridden_by", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column("override_freeze", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("skip_order", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("promotion", schema=None) as batch_op:
        batch_op.drop_column("skip_order")
        batch_op.drop_column("override_freeze")
        batch_op.drop_column("overridden_by")
    with op.batch_alter_table("freeze", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_freeze_environment"))
    op.drop_table("freeze")
