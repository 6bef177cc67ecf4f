"""Alembic environment: run on the connection that ``Store.migrate`` hands over (sync facade of the
async engine), so migrations use the very same URL and driver as the application."""

from alembic import context

from bot.store import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `python -m bot migrate` (Store.migrate), not the alembic CLI")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
