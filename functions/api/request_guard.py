"""What every request passes before routing: a readable JSON body, no NUL anywhere, finite numbers.

The routes' pydantic models validate shapes; this step refuses what must never reach them or
the database: bytes that are not UTF-8 (400), a body that is not JSON (415), JSON nested deeper
than any body of this API (400, checked before the parser recurses), NUL characters in a
string, a key, the path or the query (422: PostgreSQL cannot store them in text), and numbers
that are not finite (422): Python's json reads the non-standard tokens `NaN`, `Infinity` and
`-Infinity` and turns an overflowing literal such as `1e999` into infinity, while PostgreSQL's
json/jsonb (and the JSON standard) have no such values, so one in a free-form field (a worker's
`result`, a config) would otherwise fail the INSERT on PostgreSQL only.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any
from urllib.parse import unquote

from functions.api.errors import ApiError, BadRequest, Unprocessable, UnsupportedMediaType

MAX_JSON_DEPTH = 32
"""No body of this API nests anywhere near this; free-form dicts (config, result) included."""

JSON_MEDIA_TYPES = frozenset({"application/json"})


def check(event: dict[str, Any], headers: dict[str, str]) -> ApiError | None:
    """The error to answer instead of routing, or None; decodes a base64 body in place."""
    nul = _nul_outside_body(event)
    if nul is not None:
        return nul
    raw = event.get("body")
    if not raw:
        return None
    media_type = (headers.get("content-type") or "application/json").split(";")[0].strip().lower()
    if media_type not in JSON_MEDIA_TYPES and not media_type.endswith("+json"):
        return UnsupportedMediaType(
            f"this API reads application/json bodies, not {media_type or 'an empty content type'!r}",
            ["content-type"],
        )
    if event.get("isBase64Encoded"):
        try:
            text = base64.b64decode(raw, validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            return BadRequest(f"the body is not valid UTF-8 ({exc.__class__.__name__})", ["body"])
        event["body"], event["isBase64Encoded"] = text, False
    else:
        text = raw
    if _bracket_depth(text) > MAX_JSON_DEPTH:
        return BadRequest(f"the JSON body is nested too deep (at most {MAX_JSON_DEPTH} levels)", ["body"])
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None  # the route's validation answers 422 naming the body
    problem = _first_problem(parsed)
    if problem is not None:
        where, why = problem
        return Unprocessable(f"invalid request: {where}: {why}", [where])
    return None


def _bracket_depth(text: str) -> int:
    """The deepest [ / { nesting outside strings, without recursion (a scan, not a parse)."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest


_NUL = "NUL characters are not allowed in text"
_NOT_FINITE = "numbers must be finite (NaN, Infinity and -Infinity are not JSON)"


def _first_problem(value: Any) -> tuple[str, str] | None:
    """(dotted path, reason) of the first string or key holding a NUL or the first non-finite
    number, or None; the path is "body" when the whole body is the offending value."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path or "body", _NUL
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path or "body", _NOT_FINITE
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if "\x00" in key:
                    return child_path.replace("\x00", "\\0"), _NUL
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend(
                (f"{path}.{index}" if path else str(index), child) for index, child in enumerate(item)
            )
    return None


def _nul_outside_body(event: dict[str, Any]) -> ApiError | None:
    path = event.get("rawPath") or ""
    if "\x00" in unquote(path):
        return Unprocessable("invalid request: path: NUL characters are not allowed", ["path"])
    for name, value in (event.get("queryStringParameters") or {}).items():
        if "\x00" in name or "\x00" in (value or ""):
            return Unprocessable(f"invalid request: {name}: NUL characters are not allowed", [name])
    return None
