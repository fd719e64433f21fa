"""The work signal's table is granted by what the adapter's methods call: the scheduler reads, settles and
keeps the health checker's snapshot (GetItem, UpdateItem), the API only marks (UpdateItem); nothing else."""

from __future__ import annotations

from infra_cdk import constants
from shared.work_signal.dynamodb import ACTIONS, SCHEDULER_METHODS
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.test_compute import _actions, _function, _policy_statements, _role_of


def _dynamodb_actions(app: Synthesized, function: str) -> set[str]:
    _, props = _function(app, function)
    statements = _policy_statements(app, _role_of(props))
    return {a for s in statements for a in _actions(s) if a.startswith("dynamodb:")}


def test_the_scheduler_may_do_what_its_signal_methods_call_and_the_api_only_mark(
    default_app: Synthesized,
) -> None:
    assert set(SCHEDULER_METHODS) >= {"read", "settle", "load_snapshot", "save_snapshot"}
    wanted = {a for method in SCHEDULER_METHODS for a in ACTIONS[method]}
    assert (
        _dynamodb_actions(default_app, constants.SCHEDULER_FUNCTION)
        == wanted
        == {
            "dynamodb:GetItem",
            "dynamodb:UpdateItem",
        }
    )
    assert set(ACTIONS["mark"]) <= _dynamodb_actions(default_app, constants.API_FUNCTION)
