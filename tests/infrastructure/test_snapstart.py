"""SnapStart (issue 23): the API and the Telegram bot consumer restore from a snapshot on published versions,
and what triggers them (the HTTP API's integration, the SQS event source mapping) calls the alias: a trigger on
the unqualified function would run $LATEST, which SnapStart never snapshots."""

from __future__ import annotations

from typing import Any

from infra_cdk import constants
from infra_cdk.constructs.runtime import LIVE_ALIAS, SNAPSTART_FUNCTIONS
from tests.infrastructure.conftest import Synthesized


def _logical_ids_by_name(app: Synthesized) -> dict[str, str]:
    prefix = app.stack.config.resource_prefix + "-"
    return {
        props["FunctionName"].removeprefix(prefix): logical_id
        for logical_id, resource in app.resources("AWS::Lambda::Function").items()
        if isinstance(props := resource["Properties"], dict)
        and isinstance(props.get("FunctionName"), str)
        and props["FunctionName"].startswith(prefix)
    }


def _alias_of(app: Synthesized, function_id: str) -> tuple[str, dict[str, Any]]:
    found = [
        (logical_id, alias["Properties"])
        for logical_id, alias in app.resources("AWS::Lambda::Alias").items()
        if alias["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    assert len(found) == 1, f"{function_id} has {len(found)} aliases"
    return found[0]


def test_snapstart_is_on_exactly_for_the_api_and_the_bot_consumer(any_app: Synthesized) -> None:
    assert {constants.API_FUNCTION, constants.TELEGRAM_BOT_FUNCTION} == SNAPSTART_FUNCTIONS
    ids = _logical_ids_by_name(any_app)
    functions = any_app.resources("AWS::Lambda::Function")
    snapstarted = {
        name for name, logical_id in ids.items() if "SnapStart" in functions[logical_id]["Properties"]
    }
    assert snapstarted == SNAPSTART_FUNCTIONS
    for name in SNAPSTART_FUNCTIONS:
        props = functions[ids[name]]["Properties"]
        assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}, name
        assert props["Runtime"] == "python3.12", name  # SnapStart for Python needs 3.12 or later


def test_each_snapstart_function_has_a_published_version_behind_its_live_alias(any_app: Synthesized) -> None:
    ids = _logical_ids_by_name(any_app)
    versions = any_app.resources("AWS::Lambda::Version")
    for name in SNAPSTART_FUNCTIONS:
        _, alias = _alias_of(any_app, ids[name])
        assert alias["Name"] == LIVE_ALIAS
        version_id = alias["FunctionVersion"]["Fn::GetAtt"][0]
        assert versions[version_id]["Properties"]["FunctionName"] == {"Ref": ids[name]}, name
        # replaced on update, not retained: every live version's snapshot is billed (tests/infrastructure/idle_cost.py)
        assert versions[version_id].get("DeletionPolicy") == "Delete", name


def test_the_http_api_integration_and_its_invoke_permission_target_the_api_alias(
    any_app: Synthesized,
) -> None:
    ids = _logical_ids_by_name(any_app)
    alias_id, _ = _alias_of(any_app, ids[constants.API_FUNCTION])
    uris = [
        i["Properties"]["IntegrationUri"]
        for i in any_app.resources("AWS::ApiGatewayV2::Integration").values()
    ]
    assert {"Ref": alias_id} in uris
    assert {"Fn::GetAtt": [ids[constants.API_FUNCTION], "Arn"]} not in uris
    permissions = [
        p["Properties"]
        for p in any_app.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    assert {"Ref": alias_id} in [p["FunctionName"] for p in permissions]


def _names_alias(target: Any, alias_id: str) -> bool:
    """`<function name>:live`, as the CDK spells an alias in a mapping (the name part split off the alias's ARN)."""
    return (
        isinstance(target, dict)
        and "Fn::Join" in target
        and target["Fn::Join"][1][-1] == f":{LIVE_ALIAS}"
        and {"Ref": alias_id} in target["Fn::Join"][1][0]["Fn::Select"][1]["Fn::Split"]
    )


def test_the_bot_consumers_queue_mapping_targets_its_alias_and_the_others_stay_unqualified(
    any_app: Synthesized,
) -> None:
    ids = _logical_ids_by_name(any_app)
    bot_id = ids[constants.TELEGRAM_BOT_FUNCTION]
    bot_alias, _ = _alias_of(any_app, bot_id)
    targets = [
        m["Properties"]["FunctionName"] for m in any_app.resources("AWS::Lambda::EventSourceMapping").values()
    ]
    bot_targets = [t for t in targets if _names_alias(t, bot_alias)]
    assert len(bot_targets) == 1  # the telegram-updates queue
    assert {"Ref": bot_id} not in targets
    others = [t for t in targets if not _names_alias(t, bot_alias)]
    assert all(set(t) == {"Ref"} and t["Ref"] in ids.values() for t in others)  # the rest: unqualified


def test_cdk_nag_has_nothing_to_say_about_the_versions_and_aliases(any_app: Synthesized) -> None:
    """The fixture's synth raises on any unacknowledged finding; nothing was acknowledged for these either."""
    report = any_app.validation_report()
    text = str(report)
    for logical_id in any_app.resources("AWS::Lambda::Alias"):
        assert logical_id not in text
