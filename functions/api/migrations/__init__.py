"""Alembic migrations for the API's database."""

HEAD_REVISION = "0012_incident_push"
"""The revision this code expects; a test checks it equals Alembic's head (kept here so the
cold-start schema check does not import Alembic)."""
