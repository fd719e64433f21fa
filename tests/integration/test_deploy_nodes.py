"""The deploy graph's nodes one at a time, against the real API (in-process, SQLite), a local queue and a
local repository host: each node gets the state the graph would hand it, and what it returns,
publishes and records is checked. The graph's wiring and its checkpoints: test_deploy_graph.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.deploy.state import DeployState
from shared.contracts import ANSIBLE_DEPLOY_QUEUE, PROVISIONER_QUEUE, AnsibleDeployMessage, ProvisionerMessage
from shared.contracts.api import DeploymentRecord, TaskStatus
from shared.contracts.workers import NO_AGENT
from tests.deploy_support import CONTRACT, PROJECT, DeployWorld, deploy_world, free_port_block, health_server
from tests.factories import drain


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DeployWorld]:
    with deploy_world(tmp_path, free_port_block()) as w:
        w.push()
        yield w


def _completed_engineering(world: DeployWorld, result: dict[str, object], agent: str = "codex") -> str:
    task = world.admin.start_engineering(PROJECT, "add a feature", agent=agent)
    world.service.claim_task(task.id, worker="test")
    world.service.complete_task(task.id, result)
    return task.id


# -- prepare -----------------------------------------------------------------------------------------


def _head(world: DeployWorld, branch: str = "main") -> str:
    sha = world.repos.branch_head(world.full_name, branch)
    assert sha
    return sha


def test_prepare_ships_mains_head_with_the_last_engineering_agent(world: DeployWorld) -> None:
    # given engineering finished on a branch with the codex agent (merged or not, main is what ships)
    world.push(branch="feature/login")
    _completed_engineering(world, {"branch": "feature/login"})
    task = world.deploy_task()
    # when
    update = world.nodes.prepare(DeployState(task_id=task.id, project_id=task.project_id))
    # then
    main = _head(world)
    assert update == {
        "kind": "deploy",
        "project_name": PROJECT,
        "server_handle": "localhost",
        "server_host": "127.0.0.1",
        "connection": "local",
        "repo_full_name": world.full_name,
        "attempt": 0,
        "agent": "codex",
        "ref": "main",
        "commit_sha": main,
        "repo_url": world.service.get_project(PROJECT).repo_url,
        "domain": "",
        "rollback_of": None,
    }
    said = f"deploying {PROJECT} to main ({main[:12]}) on localhost"
    assert world.steps(task.id)[-1] == ("prepare", said)


def test_prepare_resolves_a_branch_asked_for_takes_a_sha_as_is_and_the_default_agent(
    world: DeployWorld,
) -> None:
    world.push(branch="v1.2")
    asked = world.deploy_task(ref="v1.2")
    update = world.nodes.prepare(world.state(asked))
    assert (update["ref"], update["commit_sha"]) == ("v1.2", _head(world, "v1.2"))
    assert update["agent"] == world.settings.default_agent
    world.service.fail_task(asked.id, "done with it")
    sha = _head(world)
    by_sha = world.deploy_task(ref=sha)
    assert (world.nodes.prepare(world.state(by_sha))["commit_sha"]) == sha
    world.service.fail_task(by_sha.id, "done with it")
    unknown = world.nodes.prepare(world.state(world.deploy_task(ref="no-such-branch")))
    assert unknown == {
        "outcome": "failed",
        "error": f"cannot deploy 'no-such-branch': it is neither a branch of {world.full_name} "
        "nor a full commit sha",
    }


def test_prepare_fails_when_main_has_no_commit(tmp_path: Path) -> None:
    with deploy_world(tmp_path, free_port_block()) as empty:
        update = empty.nodes.prepare(empty.state(empty.deploy_task()))
        assert update == {
            "outcome": "failed",
            "error": f"{empty.full_name} has no commit on main yet: run engineering first",
        }


def test_prepare_fails_without_a_repository_or_a_server(world: DeployWorld) -> None:
    world.admin.add_server("web-1", "203.0.113.7")
    task = world.deploy_task("web-1")
    world.admin.remove_server("web-1")
    assert world.nodes.prepare(world.state(task)) == {
        "outcome": "failed",
        "error": "server 'web-1' not found (add it with `orchestrator server add`)",
    }
    world.service.fail_task(task.id, "done with it")
    task = world.deploy_task()
    world.admin.update_project(PROJECT, repo_url=None)
    update = world.nodes.prepare(world.state(task))
    assert update["outcome"] == "failed" and "has no repository yet: run engineering first" in update["error"]


def test_prepare_an_undeploy_takes_the_running_deployment(world: DeployWorld) -> None:
    project = world.service.get_project(PROJECT)
    port = world.service.allocate_port("localhost", project.id).port
    world.service.record_deployment(
        project.id,
        DeploymentRecord(
            server_handle="localhost",
            port=port,
            url=f"http://127.0.0.1:{port}",
            health_url=f"http://127.0.0.1:{port}/health",
            ref="v1",
        ),
    )
    task = world.service.claim_task(world.admin.start_undeploy(PROJECT).id, worker="test")
    update = world.nodes.prepare(world.state(task))
    assert update["kind"] == "undeploy" and update["port"] == port and update["ref"] == "v1"
    assert world.steps(task.id)[-1] == ("undeploy", f"undeploying {PROJECT} from localhost:{port}")


# -- env analyzer ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("connection", "host"), [("local", "127.0.0.1"), ("ssh", "0.0.0.0")])  # noqa: S104
def test_the_env_contract_says_how_to_run_and_which_secrets_to_wait_for(
    world: DeployWorld, connection: str, host: str
) -> None:
    task = world.deploy_task()
    update = world.nodes.analyze_env(
        world.state(task, connection=connection, secret_names=[], required_secrets=[])
    )
    assert update == {
        "port_variable": "PORT",
        "health_path": "/health",
        "run_command": "python3 -m app.server",
        "env": {"HOST": host, "LOG_LEVEL": "info"},
        "secret_names": ["API_TOKEN", "SENTRY_DSN"],
        "required_secrets": ["API_TOKEN"],
    }
    assert world.steps(task.id)[-1][0] == "env"


def test_a_required_variable_without_default_is_waited_for_like_a_secret(world: DeployWorld) -> None:
    world.push({**CONTRACT, "variables": [{"name": "DATABASE_URL", "required": True}], "secrets": []}, "db")
    update = world.nodes.analyze_env(world.state(world.deploy_task(), ref="db"))
    assert update["secret_names"] == ["DATABASE_URL"] and update["required_secrets"] == ["DATABASE_URL"]


def test_a_missing_or_broken_env_contract_fails_the_deploy(world: DeployWorld) -> None:
    task = world.deploy_task()
    missing = world.nodes.analyze_env(world.state(task, ref="no-such-branch"))
    assert (
        missing["outcome"] == "failed"
        and "orchestrator.env.json not found at no-such-branch" in missing["error"]
    )
    world.push({"port_variable": "PORT"}, "broken")
    broken = world.nodes.analyze_env(world.state(task, ref="broken"))
    assert broken["outcome"] == "failed" and broken["error"]


# -- secrets -----------------------------------------------------------------------------------------


def test_a_missing_secret_parks_the_task_until_it_is_set(world: DeployWorld) -> None:
    # given SENTRY_DSN is set but the required API_TOKEN is not
    world.admin.set_secret(PROJECT, "SENTRY_DSN", "https://sentry.example")
    task = world.deploy_task()
    state = world.state(task)
    # when
    waiting = world.nodes.resolve_secrets(state)
    # then the task waits for input, naming the secret and the command
    assert waiting["missing"] == ["API_TOKEN"] and list(waiting["secret_refs"]) == ["SENTRY_DSN"]
    parked = world.service.get_task(task.id)
    assert parked.status is TaskStatus.WAITING_INPUT
    assert world.nodes.resolve_secrets(state)["missing"] == ["API_TOKEN"], "a replay while waiting is fine"
    # when the person sets it and the graph is woken
    world.admin.set_secret(PROJECT, "API_TOKEN", "s3cret")
    assert world.nodes.secrets_set(state) == {} and world.nodes.secrets_set(state) == {}
    resolved = world.nodes.resolve_secrets(state)
    # then the task runs again with both secrets by reference, never by value
    assert world.service.get_task(task.id).status is TaskStatus.RUNNING
    assert resolved["missing"] == [] and sorted(resolved["secret_refs"]) == ["API_TOKEN", "SENTRY_DSN"]
    assert "s3cret" not in str(resolved)
    assert world.steps(task.id)[-1] == ("secrets", "secrets resolved by reference: API_TOKEN, SENTRY_DSN")


def test_a_cancelled_deploy_stops_at_the_next_step(world: DeployWorld) -> None:
    task = world.deploy_task()
    world.admin.cancel_task(task.id)
    state = world.state(task, port=8000)
    assert world.nodes.resolve_secrets(state) == {"outcome": "cancelled"}
    assert world.nodes.readiness(state) == {"outcome": "cancelled"}
    assert world.nodes.deploy_request(state) == {"outcome": "cancelled"}
    assert world.nodes.fail(state.model_copy(update={"outcome": "failed", "error": "x"})) == {
        "outcome": "cancelled"
    }
    assert drain(world.queue, ANSIBLE_DEPLOY_QUEUE) == []
    assert world.service.get_task(task.id).status is TaskStatus.CANCELLED


# -- readiness and the port --------------------------------------------------------------------------


def test_the_local_server_is_ready_by_definition(world: DeployWorld) -> None:
    task = world.deploy_task()
    assert world.nodes.readiness(world.state(task, port=8000)) == {}
    assert world.service.get_server("localhost").status == "up"
    assert drain(world.queue, PROVISIONER_QUEUE) == []


def test_an_ssh_server_is_provisioned_with_the_port_open(world: DeployWorld) -> None:
    world.admin.add_server("web-1", "203.0.113.7")
    task = world.deploy_task("web-1")
    state = world.state(task, server_handle="web-1", server_host="203.0.113.7", connection="ssh", port=8123)
    assert world.nodes.readiness(state) == {"error": "provision"}
    [job] = drain(world.queue, PROVISIONER_QUEUE)
    assert isinstance(job, ProvisionerMessage)
    assert (job.request_id, job.server_handle, job.job_type, job.open_ports) == (
        f"{task.id}:provision:0",
        "web-1",
        "provision",
        [8123],
    )
    assert world.nodes.provisioned(state, {"status": "success", "reachable": True}) == {"error": None}
    refused = world.nodes.provisioned(state, {"status": "failed", "errors": ["apt failed", "ufw failed"]})
    assert refused == {
        "outcome": "failed",
        "error": "server web-1 (203.0.113.7) is not ready: apt failed; ufw failed",
    }
    unreachable = world.nodes.provisioned(state, {"status": "success", "reachable": False})
    assert unreachable["error"].endswith("is not ready: no answer")


def _in_range(world: DeployWorld, *ports: int) -> bool:
    settings = world.harness.deps.settings
    return all(settings.port_range_start <= p <= settings.port_range_end for p in ports)


def test_a_first_deploy_gets_the_stable_port_slot_a_and_release_1(world: DeployWorld) -> None:
    task = world.deploy_task()
    state = world.state(task, health_path="/healthz")
    # when
    update = world.nodes.allocate(state)
    # then the address is the stable port; the release goes to slot a on a port of its own
    stable, port = update["stable_port"], update["port"]
    assert stable != port and _in_range(world, stable, port)
    url = f"http://127.0.0.1:{stable}"
    assert update == {
        "slot": "a",
        "port": port,
        "stable_port": stable,
        "release_id": update["release_id"],
        "release_number": 1,
        "deployed_url": url,
        "health_url": url + "/healthz",
    }
    held = {(p.slot, p.port) for p in world.service.list_ports("localhost")}
    assert held == {("", stable), ("a", port)}
    release = world.service.get_release(PROJECT, 1)
    assert (release.status, release.commit_sha, release.ref, release.slot, release.port) == (
        "deploying",
        state.commit_sha,
        "main",
        "a",
        port,
    )
    assert release.task_id == task.id and release.rollback_of is None
    # a replay (or a fix round of the same task) gets the same ports and release back
    assert world.nodes.allocate(state.model_copy(update={"slot": "a"})) == update
    assert [r.number for r in world.service.list_releases(PROJECT).items] == [1]


def test_a_redeploy_goes_to_the_slot_not_serving_and_keeps_the_address(world: DeployWorld) -> None:
    # given release 1 serves from slot a
    first = world.deploy_task()
    one = world.state(first)
    one = one.model_copy(update=world.nodes.allocate(one))
    assert world.nodes.finalize(one) == {"outcome": "completed"}
    # when the next deploy allocates
    second = world.deploy_task()
    update = world.nodes.allocate(world.state(second))
    # then it takes slot b on another port, behind the same stable port
    assert (update["slot"], update["release_number"]) == ("b", 2)
    assert update["stable_port"] == one.stable_port and update["port"] not in (one.port, one.stable_port)
    assert world.steps(second.id)[-1][0] == "release"


def test_a_deploy_fails_at_once_when_no_port_is_free(tmp_path: Path) -> None:
    first, _ = free_port_block(1)
    with deploy_world(tmp_path, (first, first)) as world:
        # given the only port of the range is held by another project
        other = world.admin.create_project("other", "", ["backend"])
        world.service.allocate_port("localhost", other.id)
        task = world.deploy_task()
        # when / then
        update = world.nodes.allocate(world.state(task))
        assert update["outcome"] == "failed" and update["error"].startswith(
            "no port for this deploy on localhost:"
        )


# -- the Ansible deploy and the smoke test -----------------------------------------------------------


def test_the_deploy_job_carries_references_only(world: DeployWorld) -> None:
    task = world.deploy_task()
    state = world.state(task, port=8123, env={"LOG_LEVEL": "info"}, secret_refs={"API_TOKEN": "secret://x"})
    assert world.nodes.deploy_request(state) == {}
    [job] = drain(world.queue, ANSIBLE_DEPLOY_QUEUE)
    assert isinstance(job, AnsibleDeployMessage)
    assert job.request_id == f"{task.id}:ansible:0" and job.job_type == "deploy" and job.port == 8123
    assert job.secret_refs == {"API_TOKEN": "secret://x"} and job.github_token_ref == "secret://github-token"
    assert (job.env, job.ref, job.run_command, job.port_variable) == (
        {"LOG_LEVEL": "info"},
        state.commit_sha,
        "python3 -m app.server",
        "PORT",
    )
    assert job.slot is None and job.stable_port is None  # a state from before slots: in place
    assert world.steps(task.id)[-1] == (
        "deploy",
        f"ansible: deploying {state.commit_sha[:12]} to localhost:8123",
    )


def test_a_release_job_names_its_slot_the_stable_port_and_the_commit(world: DeployWorld) -> None:
    task = world.deploy_task()
    state = world.state(task)
    state = state.model_copy(update=world.nodes.allocate(state))
    assert world.nodes.deploy_request(state) == {}
    [job] = drain(world.queue, ANSIBLE_DEPLOY_QUEUE)
    assert (job.slot, job.port, job.stable_port, job.release, job.ref, job.domain) == (
        "a",
        state.port,
        state.stable_port,
        1,
        state.commit_sha,
        None,
    )


def test_a_failed_ansible_run_goes_to_a_fix_round_with_what_it_saw(world: DeployWorld) -> None:
    task = world.deploy_task()
    state = world.state(task, port=8123)
    log = "/srv/apps/blog/service.log"
    ok = world.nodes.deployed(state, {"status": "success", "service_log_path": log})
    assert ok == {"last_failure": None, "last_cause": None, "service_log_path": log}
    update = world.nodes.deployed(
        state,
        {
            "status": "failed",
            "error": "service did not start",
            "exit_code": 2,
            "stdout": "TASK [Report the failed health check] ... msg: '{{ ansible_failed_result.stdout }}'",
            "service_log": "Traceback (most recent call last):\nModuleNotFoundError: No module named 'app.x'",
            "service_log_path": log,
        },
    )
    # the fix round's agent gets everything; a person gets the error, the service's own lines, the path
    cause = (
        f"ModuleNotFoundError: No module named 'app.x'\nservice did not start\nservice log (last 2 lines of {log}):\n"
        "  Traceback (most recent call last):\n  ModuleNotFoundError: No module named 'app.x'"
    )
    assert update["last_cause"] == cause and update["service_log_path"] == log
    assert update["last_failure"].startswith(cause + "\nexit code 2\nstdout:\nTASK [Report")
    assert world.steps(task.id)[-1] == ("deploy", "ansible deploy failed")


def test_the_smoke_test_passes_on_200_and_fails_otherwise(world: DeployWorld) -> None:
    task = world.deploy_task()
    with health_server() as url:
        passed = world.nodes.smoke(world.state(task, health_url=url + "/health"))
        assert passed == {"last_failure": None, "last_cause": None}
    with health_server(status=503) as url:
        update = world.nodes.smoke(world.state(task, health_url=url + "/health"))
    assert (
        update["last_failure"].startswith("smoke test failed: GET") and "HTTP 503" in update["last_failure"]
    )
    assert [step for step, _ in world.steps(task.id)][-2:] == ["smoke", "smoke"]
    assert "slot" not in update  # in place (a state from before slots)
    with health_server(status=503) as url:
        moved = world.nodes.smoke(world.state(task, health_url=url + "/health", slot="b"))
    assert moved["slot"] == "a", "slot b took the stable address: a fix round's release goes to a"


# -- the fix loop ------------------------------------------------------------------------------------


def test_a_fix_round_opens_one_engineering_task_even_when_replayed(world: DeployWorld) -> None:
    task = world.deploy_task()
    state = world.state(task, last_failure="smoke test failed: HTTP 500")
    first = world.nodes.fix_request(state)
    again = world.nodes.fix_request(state)
    assert first == again
    fix = world.service.get_task(first["fix_task_id"])
    assert fix.type == "engineering" and fix.params["parent_task_id"] == task.id
    assert fix.params["deploy_fix_attempt"] == 1 and fix.params["agent"] == "claude-code"
    assert fix.spec and "smoke test failed: HTTP 500" in fix.spec


def test_fix_rounds_stop_at_the_limit_and_without_an_agent(world: DeployWorld) -> None:
    task = world.deploy_task()
    limit = world.settings.deploy_max_fix_attempts
    spent = world.nodes.fix_request(world.state(task, attempt=limit, last_failure="boom"))
    assert spent == {"outcome": "failed", "error": f"deploy failed after {limit} fix round(s): boom"}
    no_agent = world.nodes.fix_request(world.state(task, agent=NO_AGENT, last_failure="boom"))
    assert no_agent["error"] == "deploy failed and there is no coding agent to fix it (agent none): boom"
    world.settings = world.settings.model_copy(update={"deploy_max_fix_attempts": 0})
    none_allowed = world.nodes.fix_request(world.state(task))
    assert none_allowed["error"] == "deploy failed and no fix round is allowed: the deploy failed"


def test_a_finished_fix_round_redeploys_what_it_merged_and_a_failed_one_fails_the_deploy(
    world: DeployWorld,
) -> None:
    task = world.deploy_task()
    fix_id = world.nodes.fix_request(world.state(task, last_failure="boom"))["fix_task_id"]
    merged = "f" * 40
    world.service.claim_task(fix_id, worker="test")
    world.service.complete_task(fix_id, {"branch": "fix/deploy-1", "merge_commit": merged})
    fixed = world.nodes.fixed(world.state(task, fix_task_id=fix_id, last_failure="boom"))
    assert fixed == {"ref": "main", "commit_sha": merged, "attempt": 1, "last_failure": None}

    second = world.nodes.fix_request(world.state(task, attempt=1, last_failure="boom"))["fix_task_id"]
    world.service.claim_task(second, worker="test")
    world.service.fail_task(second, "tests still red")
    failed = world.nodes.fixed(world.state(task, attempt=1, fix_task_id=second))
    assert failed == {"outcome": "failed", "error": "fix round 2 ended FAILED: tests still red"}


def test_a_fix_left_unmerged_ships_its_branchs_head(world: DeployWorld) -> None:
    task = world.deploy_task()
    fix_id = world.nodes.fix_request(world.state(task, last_failure="boom"))["fix_task_id"]
    world.push(branch="fix/deploy-1")
    world.service.claim_task(fix_id, worker="test")
    world.service.complete_task(fix_id, {"branch": "fix/deploy-1"})
    fixed = world.nodes.fixed(world.state(task, fix_task_id=fix_id))
    assert (fixed["ref"], fixed["commit_sha"]) == ("fix/deploy-1", _head(world, "fix/deploy-1"))


def test_a_rollback_that_fails_just_fails(world: DeployWorld) -> None:
    task = world.deploy_task()
    update = world.nodes.fix_request(world.state(task, rollback_of=1, last_failure="boom"))
    assert update == {
        "outcome": "failed",
        "error": "rollback to release 1 failed (no fix round for a rollback): boom",
    }
    assert world.service.list_tasks(project=task.project_id, type="engineering").items == []


# -- undeploy ----------------------------------------------------------------------------------------


def test_an_undeploy_stops_both_slots_frees_every_port_and_completes(world: DeployWorld) -> None:
    # given the project serves from slot a behind its stable port
    task = world.deploy_task()
    served = world.state(task)
    served = served.model_copy(update=world.nodes.allocate(served))
    world.nodes.finalize(served)
    world.service.allocate_port("localhost", served.project_id, slot="b")  # a release once went to b
    undeploy = world.service.claim_task(world.admin.start_undeploy(PROJECT).id, worker="test")
    state = world.state(undeploy).model_copy(update=world.nodes.prepare(world.state(undeploy)))
    assert (state.kind, state.port, state.slot) == ("undeploy", served.stable_port, "a")
    # when
    assert world.nodes.undeploy_request(state) == {}
    [job] = drain(world.queue, ANSIBLE_DEPLOY_QUEUE)
    assert job.job_type == "undeploy" and job.request_id == f"{undeploy.id}:undeploy:0"
    assert (job.port, job.slot) == (served.stable_port, "a")
    refused = world.nodes.undeployed(state, {"status": "failed", "error": "systemctl failed"})
    assert refused == {"outcome": "failed", "error": "undeploy failed: systemctl failed"}
    assert world.nodes.undeployed(state, {"status": "success"}) == {"outcome": "completed"}
    # then
    assert world.service.get_deployment(served.project_id).status == "stopped"
    assert world.service.list_ports("localhost") == []
    done = world.service.get_task(undeploy.id)
    assert done.status is TaskStatus.COMPLETED and done.result
    assert done.result["stopped_url"] == served.deployed_url


# -- the end -----------------------------------------------------------------------------------------


def _serving(world: DeployWorld) -> DeployState:
    """Release 1 of `main`, serving from slot a (allocated and finalized)."""
    task = world.deploy_task()
    state = world.state(task)
    state = state.model_copy(update=world.nodes.allocate(state))
    assert world.nodes.finalize(state) == {"outcome": "completed"}
    return state


def test_finalize_makes_the_release_current_switches_the_deployment_and_completes(
    world: DeployWorld,
) -> None:
    # given release 1 serves from slot a
    first = _serving(world)
    # when release 2 (slot b, after a fix round) is finalized
    task = world.deploy_task()
    state = world.state(task, attempt=1)
    state = state.model_copy(update=world.nodes.allocate(state))
    assert world.nodes.finalize(state) == {"outcome": "completed"}
    # then the deployment is release 2's slot behind the same address, and release 1 is superseded
    deployment = world.service.get_deployment(task.project_id)
    assert (deployment.status, deployment.url, deployment.port, deployment.slot, deployment.ref) == (
        "deployed",
        first.deployed_url,
        first.stable_port,
        "b",
        state.commit_sha,
    )
    statuses = [(r.number, r.status, r.url) for r in world.service.list_releases(PROJECT).items]
    assert statuses == [(2, "serving", first.deployed_url), (1, "superseded", first.deployed_url)]
    done = world.service.get_task(task.id)
    assert done.status is TaskStatus.COMPLETED and done.result
    assert {k: done.result[k] for k in ("deployed_url", "port", "deploy_fix_attempt", "release", "slot")} == {
        "deployed_url": first.deployed_url,
        "port": first.stable_port,
        "deploy_fix_attempt": 1,
        "release": 2,
        "slot": "b",
    }
    assert world.steps(task.id)[-1] == ("done", f"live at {first.deployed_url}")


def test_fail_fails_the_task_with_the_reason(world: DeployWorld) -> None:
    task = world.deploy_task()
    # before prepare, the server and port are not known
    state = DeployState(task_id=task.id, project_id=task.project_id, outcome="failed", error="no server")
    assert world.nodes.fail(state) == {"outcome": "failed"}
    failed = world.service.get_task(task.id)
    assert failed.status is TaskStatus.FAILED and failed.error == "no server"
    assert failed.result and failed.result["server_ip"] is None and failed.result["port"] is None
    assert world.steps(task.id)[-1] == ("done", "deploy failed")


def test_a_failed_redeploy_records_its_release_failed_and_leaves_the_serving_one_alone(
    world: DeployWorld,
) -> None:
    # given release 1 serves from slot a
    first = _serving(world)
    held = sorted((p.slot, p.port) for p in world.service.list_ports("localhost"))
    # when release 2 (slot b) fails
    task = world.deploy_task()
    state = world.state(task)
    state = state.model_copy(update=world.nodes.allocate(state))
    cause = "ModuleNotFoundError: No module named 'app.x'\nservice log (last 1 line): ..."
    assert world.nodes.fail(state.model_copy(update={"outcome": "failed", "error": cause})) == {
        "outcome": "failed"
    }
    # then the task and the release carry the cause; the deployment still is release 1's
    assert world.service.get_task(task.id).error == cause
    failed, current = world.service.get_release(PROJECT, 2), world.service.current_release(PROJECT)
    assert (failed.status, failed.error) == ("failed", cause)
    assert current is not None and current.number == 1
    deployment = world.service.get_deployment(task.project_id)
    assert (deployment.slot, deployment.port, deployment.task_id) == ("a", first.stable_port, first.task_id)
    # nothing freed: the stable port serves release 1, slot b's port is the next release's
    assert sorted((p.slot, p.port) for p in world.service.list_ports("localhost")) == sorted(
        [*held, ("b", state.port)]
    )
    again = world.nodes.allocate(world.state(world.deploy_task()))
    assert (again["slot"], again["port"], again["release_number"]) == ("b", state.port, 3)


def test_a_failed_first_deploy_gives_back_every_port_it_allocated(world: DeployWorld) -> None:
    task = world.deploy_task()
    state = world.state(task)
    state = state.model_copy(update=world.nodes.allocate(state))
    world.nodes.fail(state.model_copy(update={"outcome": "failed", "error": "boom"}))
    failed = world.service.get_task(task.id)
    assert failed.error == f"boom\nports {state.stable_port}, {state.port} on localhost freed"
    assert world.service.list_ports("localhost") == []
    assert world.service.get_release(PROJECT, 1).status == "failed"


def test_a_domain_on_an_ssh_server_is_the_url_and_the_stable_port_is_what_is_checked(
    world: DeployWorld,
) -> None:
    # given a project with a domain, deployed to an ssh server
    world.admin.add_server("web-1", "203.0.113.7")
    world.admin.update_project(PROJECT, domain="blog.example.com")
    task = world.deploy_task("web-1")
    state = world.state(task, **world.nodes.prepare(world.state(task)))
    assert (state.connection, state.domain) == ("ssh", "blog.example.com")
    # when the ports and the release are allocated
    state = state.model_copy(update=world.nodes.allocate(state))
    # then people get https://<domain>; the smoke test asks the stable port (no DNS needed)
    assert state.deployed_url == "https://blog.example.com"
    assert state.health_url == f"http://203.0.113.7:{state.stable_port}/health"
    # the firewall lets in the stable port and 80/443 (not the slot's port: the proxy reaches it locally)
    assert world.nodes.readiness(state) == {"error": "provision"}
    [provision] = drain(world.queue, PROVISIONER_QUEUE)
    assert provision.open_ports == [state.stable_port, 80, 443]
    world.nodes.deploy_request(state)
    [job] = drain(world.queue, ANSIBLE_DEPLOY_QUEUE)
    assert (job.domain, job.slot, job.stable_port, job.port) == (
        "blog.example.com",
        "a",
        state.stable_port,
        state.port,
    )


def test_a_project_running_in_place_from_before_slots_moves_to_slot_a_behind_its_own_port(
    world: DeployWorld,
) -> None:
    # given a deployment made before slots: the service itself on the project's one port
    project = world.service.get_project(PROJECT)
    port = world.service.allocate_port("localhost", project.id).port
    url = f"http://127.0.0.1:{port}"
    record = DeploymentRecord(server_handle="localhost", port=port, url=url, health_url=url + "/health")
    world.service.record_deployment(project.id, record)
    # when the next deploy allocates (the port is held by that service: it is the project's own)
    with health_server(port):
        update = world.nodes.allocate(world.state(world.deploy_task()))
    # then its port stays the address and the release goes to slot a
    assert (update["stable_port"], update["slot"], update["deployed_url"]) == (port, "a", url)
    assert update["port"] != port
