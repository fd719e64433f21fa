"""The OpenAPI document, generated from the code: `python -m functions.api.openapi > docs/openapi.json`.

The checked-in copy is compared with the code in the test suite, so an API change shows up in review.
"""

from __future__ import annotations

import json
import sys


def document() -> dict[str, object]:
    from functions.api.handler import OPENAPI_INFO, app

    return json.loads(app.get_openapi_json_schema(**OPENAPI_INFO))  # type: ignore[no-any-return]


def main() -> None:
    sys.stdout.write(json.dumps(document(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
