from __future__ import annotations

import json
from pathlib import Path

from shared.contracts import MODELS
from shared.contracts.export import export_json_schemas


def test_export_writes_one_valid_schema_per_model(tmp_path: Path) -> None:
    paths = export_json_schemas(tmp_path / "schemas")
    assert {p.name for p in paths} == {f"{name}.schema.json" for name in MODELS}
    engineering = json.loads((tmp_path / "schemas" / "EngineeringMessage.schema.json").read_text())
    assert engineering["title"] == "EngineeringMessage"
    assert {"task_id", "project_id", "user_id"} <= set(engineering["required"])
    union = json.loads((tmp_path / "schemas" / "WorkerCommand.schema.json").read_text())
    assert "oneOf" in union or "anyOf" in union
