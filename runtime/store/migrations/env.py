"""Alembic environment: always runs on a connection handed in by `runtime.store.migrate`.

There is no alembic.ini: the store configures Alembic in code, so `fiscobridge db
upgrade` works from any directory and with either database.
"""

from __future__ import annotations

from alembic import context

from runtime.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through runtime.store (Store.migrate or `fiscobridge db upgrade`)"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
