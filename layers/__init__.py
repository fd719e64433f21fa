"""Lambda layer requirement sets and their docker-free build."""
