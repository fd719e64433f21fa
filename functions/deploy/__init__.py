"""The DevOps department: env analysis, secrets, readiness, Ansible deploy, smoke test, fix loop."""
