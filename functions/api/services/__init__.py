"""Plain logic over a SQLAlchemy session: models in, models out; no HTTP here."""
