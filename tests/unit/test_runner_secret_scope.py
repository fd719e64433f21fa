"""The Ansible runner resolves only the job's own references (issue 16, item 1, defence in depth).

The API checks a reference when it is stored; the runner checks again when it resolves one, so a
reference that slipped past (an older row, a hand-made message) still cannot make a deploy use
another project's secret, another server's key or the stack's own keys. "Not yours" and "does not
exist" read the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.secrets.local import LocalSecrets
from tests.unit.test_ansible_job import LOCAL_TARGET, SSH_KEY, SSH_TARGET, job
from worker_image.ansible_runner.private_data import ResolvedSecrets, SecretProblem, resolve_secrets

GITHUB_REF = "secret://github/token"


@pytest.fixture
def store(tmp_path: Path) -> LocalSecrets:
    secrets = LocalSecrets(tmp_path / "secrets.json")
    for reference, value in {
        "secret://projects/p1/API_TOKEN": "tok-mine",
        "secret://projects/p2/API_TOKEN": "tok-theirs",
        "secret://servers/srv-1/ssh_key": SSH_KEY,
        "secret://servers/srv-2/ssh_key": "their-key",
        "secret://shared/fleet_key": SSH_KEY,
        "secret://local/admin_api_key": "orch_admin",
        "secret://github/other_token": "ghp_other",
        GITHUB_REF: "ghp_stack",
    }.items():
        secrets.put(reference, value)
    return secrets


def _refused(store: LocalSecrets, **overrides: object) -> str:
    with pytest.raises(SecretProblem) as raised:
        resolve_secrets(job(**overrides), store, github_token_ref=GITHUB_REF)
    return str(raised.value)


@pytest.mark.parametrize(
    "reference",
    [
        "secret://projects/p2/API_TOKEN",
        "secret://servers/srv-1/ssh_key",
        "secret://local/admin_api_key",
        GITHUB_REF,
        "secret://projects/p10/API_TOKEN",
    ],
)
def test_an_app_secret_outside_the_jobs_project_is_refused(store: LocalSecrets, reference: str) -> None:
    message = _refused(store, secret_refs={"API_TOKEN": reference})
    assert (
        message == f"secret reference {reference} (secret_refs.API_TOKEN) is missing or not this job's to use"
    )


@pytest.mark.parametrize(
    "reference",
    ["secret://servers/srv-2/ssh_key", "secret://projects/p1/API_TOKEN", "secret://local/admin_api_key"],
)
def test_an_ssh_key_of_another_server_is_refused(store: LocalSecrets, reference: str) -> None:
    message = _refused(store, target=SSH_TARGET | {"ssh_key_ref": reference})
    assert message == f"secret reference {reference} (target.ssh_key_ref) is missing or not this job's to use"


def test_a_github_token_other_than_the_stacks_is_refused(store: LocalSecrets) -> None:
    message = _refused(store, github_token_ref="secret://github/other_token")
    assert message.endswith("(github_token_ref) is missing or not this job's to use")
    with pytest.raises(SecretProblem):  # no stack token configured: none may be used
        resolve_secrets(job(github_token_ref=GITHUB_REF), store)


def test_refusal_reads_the_same_whether_or_not_the_secret_exists(store: LocalSecrets) -> None:
    existing = _refused(store, secret_refs={"API_TOKEN": "secret://projects/p2/API_TOKEN"})
    absent = _refused(store, secret_refs={"API_TOKEN": "secret://projects/p2/NOPE"})
    mine_but_absent = _refused(store, secret_refs={"API_TOKEN": "secret://projects/p1/NOPE"})
    assert {
        m.replace("API_TOKEN (", "X (").replace("NOPE (", "X (").split(" ", 3)[3]
        for m in (existing, absent, mine_but_absent)
    } == {"(secret_refs.API_TOKEN) is missing or not this job's to use"}


def test_the_jobs_own_references_resolve(store: LocalSecrets) -> None:
    resolved = resolve_secrets(
        job(
            github_token_ref=GITHUB_REF, target=SSH_TARGET | {"ssh_key_ref": "secret://servers/srv-1/ssh_key"}
        ),
        store,
        github_token_ref=GITHUB_REF,
    )
    assert resolved == ResolvedSecrets({"API_TOKEN": "tok-mine"}, "ghp_stack", SSH_KEY)
    shared = resolve_secrets(job(target=SSH_TARGET | {"ssh_key_ref": "secret://shared/fleet_key"}), store)
    assert shared.ssh_key == SSH_KEY


def test_a_job_without_a_project_may_use_no_project_secret(store: LocalSecrets) -> None:
    message = _refused(
        store,
        kind="provision",
        project_id=None,
        project_name=None,
        port=None,
        repo_url=None,
        secret_refs={"API_TOKEN": "secret://projects/p1/API_TOKEN"},
        target=LOCAL_TARGET,
    )
    assert "is missing or not this job's to use" in message
