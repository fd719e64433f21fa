"""The release contracts: what a domain may be, what a release start takes, and the rollback marker a deploy
task carries."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.contracts.api import DeployParams, ProjectUpdate, ReleaseFinish, ReleaseStart, RollbackRequest
from shared.contracts.payloads import parse_params
from shared.contracts.releases import Domain

DOMAIN = TypeAdapter(Domain)
START = {
    "project_id": "blog",
    "task_id": "t1",
    "commit_sha": "0123456789abcdef0123456789abcdef01234567",
    "server_handle": "localhost",
    "slot": "a",
    "port": 8100,
}


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("blog.example.com", "blog.example.com"),
        ("Blog.Example.COM.", "blog.example.com"),
        (" shop.example.org ", "shop.example.org"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.c.io", "a-b.c.io"),
    ],
)
def test_a_hostname_is_read_in_lowercase_without_its_final_dot(given: str, read: str) -> None:
    assert DOMAIN.validate_python(given) == read


@pytest.mark.parametrize(
    "bad",
    [
        "localhost",
        "http://blog.example.com",
        "blog.example.com/path",
        "blog..example.com",
        "-blog.example.com",
        "blog-.example.com",
        "blog_x.example.com",
        "1.2.3.4",
        "x" * 64 + ".example.com",
        ("a" * 62 + ".") * 4 + "com",  # 255 characters
        "",
    ],
)
def test_anything_else_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        DOMAIN.validate_python(bad)


def test_a_project_update_clears_its_domain_with_null() -> None:
    assert ProjectUpdate.model_validate({"domain": None}).model_dump(exclude_unset=True) == {"domain": None}
    assert "domain" not in ProjectUpdate.model_validate({}).model_dump(exclude_unset=True)
    with pytest.raises(ValidationError) as refused:
        ProjectUpdate.model_validate({"domain": "not a host"})
    assert refused.value.errors()[0]["loc"] == ("domain",)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("commit_sha", "abc"),
        ("commit_sha", "0123456789ABCDEF0123456789ABCDEF01234567"),
        ("slot", ""),
        ("slot", "c"),
        ("port", 0),
        ("rollback_of", 0),
    ],
)
def test_a_release_start_names_the_bad_field(field: str, value: object) -> None:
    ReleaseStart.model_validate(START)
    with pytest.raises(ValidationError) as refused:
        ReleaseStart.model_validate(START | {field: value})
    assert refused.value.errors()[0]["loc"] == (field,)


def test_a_release_finishes_only_serving_or_failed() -> None:
    assert ReleaseFinish(status="failed", error="boom").status == "failed"
    with pytest.raises(ValidationError):
        ReleaseFinish.model_validate({"status": "superseded"})
    with pytest.raises(ValidationError):
        RollbackRequest.model_validate({"to": 0})
    assert RollbackRequest.model_validate({}).to is None


def test_a_rollback_deploy_task_carries_the_release_it_goes_back_to() -> None:
    params = parse_params("deploy", {"server": "localhost", "ref": "a" * 40, "rollback_of": 2})
    assert isinstance(params, DeployParams) and params.rollback_of == 2
    assert parse_params("deploy", {"server": "localhost"}).rollback_of is None  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        parse_params("deploy", {"server": "localhost", "rollback_of": 0})
