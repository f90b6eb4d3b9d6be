"""config commits on releases; bundles (a group's release) and the bundle of a promotion

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bundle",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("group", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("releases", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("origin", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("bundle", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bundle_group"), ["group"], unique=False)
    with op.batch_alter_table("release", schema=None) as batch_op:
        batch_op.add_column(sa.Column("commit", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    with op.batch_alter_table("promotion", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bundle_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_foreign_key("fk_promotion_bundle_id_bundle", "bundle", ["bundle_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("promotion", schema=None) as batch_op:
        batch_op.drop_constraint("fk_promotion_bundle_id_bundle", type_="foreignkey")
        batch_op.drop_column("bundle_id")
    with op.batch_alter_table("release", schema=None) as batch_op:
        batch_op.drop_column("commit")
    with op.batch_alter_table("bundle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bundle_group"))
    op.drop_table("bundle")
