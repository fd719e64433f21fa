# One-word shortcuts for the commands the README names.
.PHONY: test rehearse agents images

# The real coding-agent CLIs the `real_agent` tests run (docs/real-agents.md), pinned; into .tools/.
AGENT_PACKAGES = @anthropic-ai/claude-code@2.1.332 @openai/codex@0.171.0 droid@0.215.0

test:
	.venv/bin/python -m pytest tests

# the AWS stack run as AWS runs it (docs/cloud-rehearsal.md); needs root and ORCH_TEST_POSTGRES_URL
rehearse:
	.venv/bin/python -m pytest -m cloud tests/cloud

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
	.venv/bin/python -m tests.images.docker_build
