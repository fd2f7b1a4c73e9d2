"""How Alembic runs the twin's revisions: on the connection the caller passes (graph/store_schema.py, `twin db`), or
on `sqlalchemy.url` when run by the alembic command; offline (`--sql`) it prints the SQL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, MetaData, create_engine

from graph.migrations import store_metadata
from graph.store_schema import VERSION_TABLE

config = context.config


def _run(connection: Connection, target: MetaData | None) -> None:
    context.configure(
        connection=connection,
        target_metadata=target,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # SQLite alters a table by copying it
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=store_metadata(),
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _run(given, config.attributes.get("metadata"))  # the models only when a revision is written from them
else:
    with create_engine(str(config.get_main_option("sqlalchemy.url"))).connect() as opened:
        _run(opened, store_metadata())
        opened.commit()
