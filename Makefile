# One-word shortcuts for the commands the README names.
.PHONY: install test test-unit test-integration test-infrastructure test-e2e test-cloud rehearse lint bench agents images

PYTHON = .venv/bin/python
PYTEST = $(PYTHON) -m pytest

# The real coding-agent CLIs the `real_agent` tests run (docs/real-agents.md), pinned; into .tools/.
AGENT_PACKAGES = @anthropic-ai/claude-code@2.1.332 @openai/codex@0.171.0 droid@0.215.0

# the venv with the package (editable) and every extra the tests and the checks need
install:
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -e '.[dev]'
	.venv/bin/pip check

# every suite (what CI runs); PostgreSQL tests need ORCH_TEST_POSTGRES_URL, the cloud rehearsal root
test:
	$(PYTEST) tests -n 2 --dist loadscope --no-loadscope-reorder

# no network, no database server, no subprocess stacks
test-unit:
	$(PYTEST) tests/unit

# moto, the real PostgreSQL (ORCH_TEST_POSTGRES_URL), real subprocesses and git
test-integration:
	$(PYTEST) tests/integration

# the synthesized CDK stack: resources, IAM scope, cdk-nag (~1 min)
test-infrastructure:
	$(PYTEST) tests/infrastructure

# the real CLI against the embedded stack
test-e2e:
	$(PYTEST) tests/e2e

# the AWS stack run as AWS runs it (docs/cloud-rehearsal.md); needs root and ORCH_TEST_POSTGRES_URL
test-cloud:
	$(PYTEST) -m cloud tests/cloud

rehearse: test-cloud

# ruff (lint, McCabe <= 12, format), mypy --strict on the whole package, the import-linter layering contracts
lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

# the benchmarks at their default sizes; they print numbers and assert nothing about time (tests/benchmarks);
# bench_seed compares with the seed's API when its source is prepared (docs/benchmarks.md), else says it skipped;
# SEED_BENCH_ARGS=--quick makes it one short round
bench:
	$(PYTHON) -m tests.benchmarks.bench_local_queue
	$(PYTHON) -m tests.benchmarks.bench_api
	$(PYTHON) -m tests.benchmarks.bench_embedded
	$(PYTHON) -m tests.benchmarks.bench_workers
	$(PYTHON) -m tests.benchmarks.bench_engineering
	$(PYTHON) -m tests.benchmarks.bench_sessions
	$(PYTHON) -m tests.benchmarks.bench_telegram_import
	$(PYTHON) -m tests.benchmarks.bench_cold_import
	$(PYTHON) -m tests.benchmarks.bench_redeploy
	$(PYTHON) tests/benchmarks/bench_run.py
	$(PYTHON) -m tests.benchmarks.bench_seed $(SEED_BENCH_ARGS)

# installs only when the pinned versions changed (the list is kept in .tools/installed); ~15 s, ~1.1 GB
agents:
	@if [ "$$(cat .tools/installed 2>/dev/null)" = "$(AGENT_PACKAGES)" ] && [ -x .tools/node_modules/.bin/claude ]; then \
		echo "agents: $(AGENT_PACKAGES) already in .tools"; \
	else \
		mkdir -p .tools && npm install --prefix .tools --no-save --no-audit --no-fund --loglevel=error $(AGENT_PACKAGES) \
			&& echo "$(AGENT_PACKAGES)" > .tools/installed; \
	fi

# the worker and Ansible runner images from a debootstrapped Debian base (docs/images.md); needs a Docker engine.
# Then `.venv/bin/python -m pytest -m images tests/images` runs them against the embedded stack.
images:
	$(PYTHON) -m tests.images.docker_build
