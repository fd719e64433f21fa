"""Typed task payloads through the real handler, on SQLite and PostgreSQL: a wrong params body is a 422
naming the field, created tasks read back with their type's params model, a stored result reads back as
its result model, and the task service itself refuses params its type's model does not accept."""

from __future__ import annotations

from typing import Any

import pytest

from functions.api.auth import Principal
from functions.api.errors import Unprocessable
from functions.api.models import Project as ProjectRow
from functions.api.models import Task as TaskRow
from functions.api.services import tasks as tasks_service
from shared.contracts import EngineeringResult
from shared.contracts.api import Task, TaskType
from shared.contracts.payloads import DeployParams, EngineeringParams, EngineeringTaskResult, UndeployParams
from tests.api_support import ApiHarness


def _server(api: ApiHarness, handle: str = "local") -> None:
    reply = api.post("/servers", {"handle": handle, "host": "127.0.0.1"})
    assert reply.status == 201, reply


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("deploy", {"server": "Not A Handle!"}, "server"),
        ("deploy", {"server": "local", "ref": "two words"}, "ref"),
        ("engineering", {"spec": "x", "base_ref": "a b"}, "base_ref"),
        ("engineering", {"spec": "x", "agent": "a" * 65}, "agent"),
    ],
)
def test_a_wrong_params_body_is_a_422_naming_the_field(
    api: ApiHarness, route: str, body: dict[str, Any], field: str
) -> None:
    api.new_project("blog")
    _server(api)

    reply = api.post(f"/projects/blog/{route}", body)

    assert reply.status == 422, reply
    assert reply.body["code"] == "validation_error" and reply.body["fields"] == [field]
    assert api.get("/tasks", project_id="blog").body["items"] == [], "no task was created"


def test_created_tasks_read_back_with_their_types_params_model(api: ApiHarness) -> None:
    api.new_project("blog")
    _server(api)

    engineering = Task.model_validate(
        api.post("/projects/blog/engineering", {"spec": "a blog", "agent": "command", "base_ref": "dev"}).body
    )
    deploy = Task.model_validate(api.post("/projects/blog/deploy", {"server": "local", "ref": "abc"}).body)

    assert engineering.typed_params() == EngineeringParams(agent="command", base_ref="dev")
    assert deploy.typed_params() == DeployParams(server="local", ref="abc")
    assert Task.model_validate(api.get(f"/tasks/{deploy.id}").body).params_as(DeployParams).ref == "abc"


def test_a_completed_tasks_result_reads_back_as_its_model(api: ApiHarness) -> None:
    api.new_project("blog")
    task_id = api.post("/projects/blog/engineering", {"spec": "a blog"}).body["id"]
    assert api.post(f"/internal/tasks/{task_id}/claim", {"worker": "test"}).status == 200
    written = EngineeringResult(
        request_id=task_id, status="success", files_changed=["app.py"], commit_sha="abc", branch="feature"
    ).model_dump(mode="json") | {"repo_url": "https://host/blog.git"}

    assert api.post(f"/internal/tasks/{task_id}/complete", {"result": written}).status == 200
    task = Task.model_validate(api.get(f"/tasks/{task_id}").body)

    result = task.typed_result()
    assert isinstance(result, EngineeringTaskResult)
    assert (result.branch, result.commit_sha, result.repo_url) == ("feature", "abc", "https://host/blog.git")
    # a field the written result lacks (merge_commit, issue 19) reads back as its default
    assert result.model_dump(mode="json") == written | {"merge_commit": None, "cost_usd": 0.0}


def test_the_task_service_refuses_params_its_type_does_not_accept(api: ApiHarness) -> None:
    api.new_project("blog")
    with api.deps.db.session() as session:
        project = session.query(ProjectRow).filter_by(name="blog").one()
        owner = Principal(
            user_id=project.owner_id, telegram_id=None, is_admin=True, scopes=frozenset({"admin"}), key_id="k"
        )
        with pytest.raises(Unprocessable) as error:
            tasks_service.create(session, owner, project, TaskType.UNDEPLOY, None, {"server": "Bad Handle"})
        assert error.value.fields == ["server"]

        task, _message = tasks_service.create(
            session, owner, project, TaskType.UNDEPLOY, None, UndeployParams(server="local")
        )
        assert session.get(TaskRow, task.id) is not None and task.params == {"server": "local"}
        assert session.query(TaskRow).count() == 1, "the refused task was never added"
