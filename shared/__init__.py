"""Contracts, settings, observability, ports and adapters shared by every function. No ORM here."""
