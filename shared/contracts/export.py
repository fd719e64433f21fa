"""JSON Schema export so producers in other languages can validate."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, TypeAdapter

from shared.contracts import MODELS


def export_json_schemas(directory: Path) -> list[Path]:
    """Write one `<Model>.schema.json` per message model plus the two unions. Returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, model in MODELS.items():
        if isinstance(model, type) and issubclass(model, BaseModel):
            schema = model.model_json_schema()
        else:
            schema = TypeAdapter(model).json_schema()
        schema.setdefault("title", name)
        schema["$id"] = f"urn:codegen-orchestrator:contracts:v1:{name}"
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
