"""Context parsing and the constants later slices size their functions from; no synth needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App

from infra_cdk import constants
from infra_cdk.config import ConfigError, StackConfig
from shared.contracts import QUEUES

OWNER = {"github_owner": "octocat"}
"""The one context value without a default."""


def _config(context: dict[str, Any]) -> StackConfig:
    return StackConfig.from_context(App(context={**OWNER, **context}).node)


def test_defaults_are_dev_no_nat_protected_and_silent() -> None:
    config = _config({})
    assert config == StackConfig(
        env_name="dev",
        prefix="codegen-orch",
        enable_nat_gateway=False,
        deletion_protection=True,
        alarm_email=None,
        github_owner="octocat",
    )
    assert config.stack_name == config.resource_prefix == "codegen-orch-dev"


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("False", False), ("1", True), ("no", False), (True, True)]
)
def test_boolean_context_accepts_cli_strings(raw: object, expected: bool) -> None:
    assert _config({"enable_nat_gateway": raw}).enable_nat_gateway is expected
    assert _config({"deletion_protection": raw}).deletion_protection is expected


@pytest.mark.parametrize(
    "context",
    [
        {"deletion_protection": "maybe"},
        {"env_name": "Prod"},
        {"env_name": "has space"},
        {"prefix": "-leading-dash"},
        {"prefix": "trailing-"},
        {"env_name": "double--dash"},
        {"env_name": "a" * 21},
        {"alarm_email": "not-an-address"},
        {"worker_task_sizes": '{"codex": {"cpu": 1024, "memory": 1024}}'},  # not a Fargate size
        {"worker_task_sizes": '{"codex": {"cpu": 3000, "memory": 4096}}'},
        {"worker_task_sizes": '{"codex": "big"}'},
        {"worker_task_sizes": "[1]"},
    ],
)
def test_bad_context_is_refused_with_the_key_named(context: dict[str, Any]) -> None:
    (key,) = context
    with pytest.raises(ConfigError, match=key):
        _config(context)


def test_worker_task_sizes_override_the_defaults_per_agent() -> None:
    from shared.workers.fargate import DEFAULT_TASK_SIZES, TaskSize

    sizes = dict(_config({"worker_task_sizes": '{"codex": {"cpu": 2048, "memory": 8192}}'}).worker_task_sizes)
    assert sizes == {**DEFAULT_TASK_SIZES, "codex": TaskSize(2048, 8192)}
    assert dict(_config({}).worker_task_sizes) == DEFAULT_TASK_SIZES


def test_empty_alarm_email_means_no_subscription() -> None:
    assert _config({"alarm_email": ""}).alarm_email is None


def test_visibility_timeout_is_six_consumer_timeouts_for_every_queue() -> None:
    for logical in QUEUES:
        assert constants.visibility_timeout_seconds(logical) == 6 * constants.consumer_timeout_seconds(
            logical
        )
        # SQS caps the visibility timeout at 12 hours.
        assert constants.visibility_timeout_seconds(logical) <= 12 * 3600


def test_a_queue_without_a_consumer_timeout_is_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="nosuch:queue"):
        constants.consumer_timeout_seconds("nosuch:queue")


def test_oldest_message_alarm_tolerates_one_failed_receive() -> None:
    # A message whose first receive failed comes back after one visibility timeout: no page for that.
    for logical in QUEUES:
        threshold = constants.oldest_message_alarm_seconds(logical)
        assert threshold >= 2 * constants.visibility_timeout_seconds(logical)
        assert threshold >= constants.OLDEST_MESSAGE_ALARM_FLOOR_SECONDS


@pytest.mark.parametrize("context", [{}, {"github_owner": ""}, {"github_owner": "  "}])
def test_github_owner_is_required_at_synth_with_the_flag_to_pass_named(context: dict[str, Any]) -> None:
    # engineering, scaffolder, deploy and the scheduler's github_sync all need it; a stack without it
    # would fail only at run time, on the first task
    with pytest.raises(ConfigError, match=r"github_owner is required.*-c github_owner=<user or org>"):
        StackConfig.from_context(App(context=context).node)


def test_compute_defaults_read_the_github_token_from_the_stack_prefix_and_tolerate_unbuilt_layers() -> None:
    config = _config({})
    assert config.github_owner == "octocat"
    assert config.github_owner_is_org is False
    assert config.github_token_ref == "secret://github/token"
    # pinned: the version the real_agent tests run (Makefile AGENT_PACKAGES), not whatever npm has that day
    assert config.worker_agent_packages == "@anthropic-ai/claude-code@2.1.332"
    assert config.worker_agent_packages in (Path(__file__).parents[2] / "Makefile").read_text()
    assert config.require_layers is False
    assert config.layers_dir == "layers/build"


def test_github_context_is_validated() -> None:
    config = _config(
        {"github_owner": "acme", "github_owner_is_org": "yes", "github_token_ref": "secret://gh/bot"}
    )
    assert (config.github_owner, config.github_owner_is_org, config.github_token_ref) == (
        "acme",
        True,
        "secret://gh/bot",
    )
    with pytest.raises(ConfigError, match="github_owner"):
        _config({"github_owner": "acme/evil"})
    with pytest.raises(ConfigError, match="github_token_ref"):
        _config({"github_token_ref": "ghp_not_a_reference"})


def test_require_layers_is_a_boolean() -> None:
    assert _config({"require_layers": "true"}).require_layers is True
    with pytest.raises(ConfigError, match="require_layers"):
        _config({"require_layers": "sometimes"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ()),
        ("", ()),
        ("111", (111,)),
        ("111, 222", (111, 222)),
        ([111, "222"], (111, 222)),
        (333, (333,)),
    ],
)
def test_telegram_admins_are_user_ids_from_cli_strings_or_cdk_json(
    raw: object, expected: tuple[int, ...]
) -> None:
    context = {} if raw is None else {"telegram_admins": raw}
    assert _config(context).telegram_admins == expected


@pytest.mark.parametrize("raw", ["alice", "111;222", "-5", "0", [True]])
def test_telegram_admins_refuse_anything_but_user_ids(raw: object) -> None:
    with pytest.raises(ConfigError, match="telegram_admins"):
        _config({"telegram_admins": raw})


def test_every_new_queue_is_sized_for_its_consumer() -> None:
    # the deploy graph resumes on the results queues; the bot's Bot API retries need 90 s
    assert constants.consumer_timeout_seconds("ansible:deploy:results") == 300
    assert constants.consumer_timeout_seconds("provisioner:results") == 300
    assert constants.consumer_timeout_seconds("telegram:updates") == 90
    assert constants.consumer_timeout_seconds("progress:events") == 60  # the notifier; one 429 may wait 20 s
    # the Product Owner consumer only calls the API and the Bot API; the agent runs in a worker
    assert constants.consumer_timeout_seconds("po:inbox") == 60
    assert constants.consumer_timeout_seconds("po:responses") == 60


def test_agent_secret_refs_are_references_from_json_or_cdk_json() -> None:
    assert _config({}).agent_secret_refs == ()
    wanted = (("ANTHROPIC_API_KEY", "secret://agents/anthropic"),)
    assert (
        _config({"agent_secret_refs": '{"ANTHROPIC_API_KEY": "secret://agents/anthropic"}'}).agent_secret_refs
        == wanted
    )
    assert (
        _config({"agent_secret_refs": {"ANTHROPIC_API_KEY": "secret://agents/anthropic"}}).agent_secret_refs
        == wanted
    )


@pytest.mark.parametrize(
    "raw",
    ['{"ANTHROPIC_API_KEY": "sk-ant-the-key-itself"}', '{"bad name": "secret://x"}', "[1]", "{not json"],
)
def test_agent_secret_refs_refuse_values_and_bad_names(raw: str) -> None:
    with pytest.raises(ConfigError, match="agent_secret_refs"):
        _config({"agent_secret_refs": raw})


def test_the_app_run_directly_takes_context_like_the_cdk_cli() -> None:
    from infra_cdk.app import context_from_argv

    assert context_from_argv(["-c", "github_owner=acme", "--context", "alarm_email=a=b@example.com"]) == {
        "github_owner": "acme",
        "alarm_email": "a=b@example.com",
    }
    assert context_from_argv([]) == {}
    with pytest.raises(SystemExit):
        context_from_argv(["-c", "github_owner"])
