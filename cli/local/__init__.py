"""`orchestrator local ...`: the whole system on one machine, no AWS, no Docker."""
