"""every look of a metric check at Prometheus while a promotion is verified

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metricsample",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("promotion_id", sa.Integer(), nullable=False),
        sa.Column("check_name", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("query", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("threshold", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("message", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["promotion_id"], ["promotion.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("metricsample", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_metricsample_promotion_id"), ["promotion_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("metricsample", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_metricsample_promotion_id"))
    op.drop_table("metricsample")
