"""The `orchestrator` command line (typer + rich), over the HTTPS API."""
