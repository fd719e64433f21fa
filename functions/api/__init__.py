"""The API function: the HTTP API over the ORM, the only package that holds models and migrations."""
