"""The CLI's own config file: API URL and key (mode 0600). Flags beat env beats the file."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shared.settings import HomeSettings

DEFAULT_API_URL = "http://127.0.0.1:8787"


def config_path() -> Path:
    override = os.environ.get("ORCH_CONFIG_FILE")
    return Path(override).expanduser() if override else HomeSettings().home / "config.json"


def read_config(path: Path | None = None) -> dict[str, str]:
    path = path or config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); fix or delete it") from None
    return {k: str(v) for k, v in data.items() if isinstance(v, (str, int))}


def write_config(values: dict[str, str], path: Path | None = None) -> Path:
    """Merge `values` into the file, atomically, readable by the owner only."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    merged = {**read_config(path), **values}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(merged, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class Connection:
    api_url: str
    api_key: str | None
    source: str


def resolve_connection(flag_url: str | None = None, flag_key: str | None = None) -> Connection:
    stored = read_config()
    url = flag_url or os.environ.get("ORCH_API_URL") or stored.get("api_url") or DEFAULT_API_URL
    key = flag_key or os.environ.get("ORCH_API_KEY") or stored.get("api_key")
    source = "flags" if flag_url or flag_key else "env" if os.environ.get("ORCH_API_URL") else "config"
    return Connection(url.rstrip("/"), key, source)


def mask(key: str | None) -> str:
    if not key:
        return "(not set)"
    return key[:9] + "…" + key[-4:] if len(key) > 16 else "****"
