# One-word shortcuts for the commands the README names.
.PHONY: test rehearse

test:
	.venv/bin/python -m pytest tests

# the AWS stack run as AWS runs it (docs/cloud-rehearsal.md); needs root and ORCH_TEST_POSTGRES_URL
rehearse:
	.venv/bin/python -m pytest -m cloud tests/cloud
