"""Alembic environment: runs on the connection promoflow.records hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import promoflow.records  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    from sqlalchemy import create_engine

    from promoflow import settings

    url = context.config.get_main_option("sqlalchemy.url") or settings.database_url(
        settings.state_dir(settings.config_path())
    )
    connection = create_engine(url).connect()

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
