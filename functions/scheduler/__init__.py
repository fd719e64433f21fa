"""Scheduled jobs: the input names the job, e.g. {"job": "outbox_sweep"}."""
