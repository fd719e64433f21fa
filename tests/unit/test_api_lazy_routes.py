"""The API handler's cold start includes no router (issue 23): a request includes those of its path's first
segment, /openapi.json and /docs include everything. Each check runs in a fresh interpreter, since the
handler's routes are per process."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import functions.api.routers as routers_package
from functions.api.handler import ROUTERS, ROUTERS_BY_SEGMENT


def _run(code: str, home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")} | {"ORCH_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120, env=env
    )
    return done.stdout.strip().splitlines()[-1]


def test_the_cold_import_loads_no_router_orm_contract_or_openapi_model(tmp_path: Path) -> None:
    loaded = set(
        json.loads(
            _run("import sys, json, functions.api.handler; print(json.dumps(list(sys.modules)))", tmp_path)
        )
    )

    heavy = ("sqlalchemy", "functions.api.routers", "functions.api.models", "shared.contracts")
    assert sorted(m for m in loaded if m.startswith(heavy)) == []
    assert "aws_lambda_powertools.event_handler.openapi.models" not in loaded


def test_every_router_is_listed_and_each_segment_names_exactly_the_routers_with_routes_under_it() -> None:
    import importlib

    modules = sorted(
        m.name for m in pkgutil.iter_modules(routers_package.__path__) if not m.name.startswith("_")
    )
    assert sorted(ROUTERS) == modules
    found: dict[str, list[str]] = {}
    for name in ROUTERS:
        router = importlib.import_module(f"functions.api.routers.{name}").router
        for segment in sorted({rule.split("/")[1] for rule, *_ in router._routes}):
            found.setdefault(segment, []).append(name)
    assert {segment: tuple(names) for segment, names in found.items()} == ROUTERS_BY_SEGMENT


ORDER_PROBE = """
import json
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from functions.api import handler
for path in {paths!r}:
    handler.include_routes_for(path)
handler.include_everything()
def listed(routes):
    return [(r.method, r.path) for r in routes]
lazy = [listed(handler.app._static_routes), listed(handler.app._dynamic_routes)]
eager = APIGatewayHttpResolver(enable_validation=True)
for name in handler.ROUTERS:
    eager.include_router(__import__(f"functions.api.routers.{{name}}", fromlist=["router"]).router)
expected = [listed(eager._static_routes) + [("GET", "/docs"), ("GET", "/openapi.json")], listed(eager._dynamic_routes)]
print(json.dumps(lazy == expected))
"""


def test_routes_match_in_the_eager_order_whatever_order_requests_loaded_them_in(tmp_path: Path) -> None:
    paths = ["/internal/workers/w/messages", "/usage", "/tasks/t", "/projects/p/secrets", "/health"]

    assert _run(ORDER_PROBE.format(paths=paths), tmp_path) == "true"


DOCUMENT_PROBE = """
import json
from functions.api import handler, restore_hooks
handler.include_routes_for("/projects")  # a request came first: the document still lists every route
docs = handler.lambda_handler(restore_hooks.warm_event("/docs"), None)
document = handler.lambda_handler(restore_hooks.warm_event("/openapi.json"), None)
print(json.dumps([docs["statusCode"], docs["headers"]["Content-Type"], "swagger-ui" in docs["body"],
                  document["statusCode"], json.loads(document["body"])]))
"""


def test_docs_and_the_openapi_document_are_served_lazily_and_complete(tmp_path: Path) -> None:
    docs_status, docs_type, swagger, status, served = json.loads(_run(DOCUMENT_PROBE, tmp_path))
    generated = json.loads(
        _run(
            "import json; from functions.api.openapi import document; print(json.dumps(document()))", tmp_path
        )
    )

    assert (docs_status, docs_type, swagger) == (200, "text/html", True)
    assert status == 200
    assert served == generated
    assert len(served["paths"]) > 50 and "bearerAuth" in served["components"]["securitySchemes"]
    assert any("links" in r for op in served["paths"]["/projects"].values() for r in op["responses"].values())
