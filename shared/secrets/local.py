"""The embedded secrets store: one JSON file in ORCH_HOME, readable by its owner only.

- the file and its lock are mode 0600; a directory we create for them is 0700; a file found
  with looser permissions is tightened (and a warning logged);
- every write goes to a 0600 temporary file in the same directory, is fsynced and then
  `os.replace`d over the store, so readers see the old or the new file, never half of one;
- read-modify-write runs under `fcntl.flock` on a sidecar lock file, so threads and processes
  sharing the store never lose each other's writes;
- reads take no lock and re-read the file, so a value written by another process is seen at once.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from shared.observability import get_logger
from shared.secrets.port import SecretNotFound, SecretsError, check_value
from shared.secrets.refs import is_arn, is_under, parse_prefix, parse_reference, reference_for

_FILE_MODE = 0o600
_DIR_MODE = 0o700
_FORMAT_VERSION = 1


class LocalSecrets:
    """Persistent local secrets; one instance may be shared by many threads."""

    backend = "local"

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.path.parent, _DIR_MODE)  # mkdir's mode is filtered by the umask
        with self._locked():
            if self.path.exists():
                self._tighten_permissions()
            else:
                self._write({})

    # -- the port ------------------------------------------------------------------------

    def put(self, reference: str, value: str) -> None:
        path = parse_reference(reference)
        check_value(reference, value)
        with self._locked():
            secrets = self._read()
            secrets[path] = value
            self._write(secrets)
        get_logger().info("secret stored", extra={"reference": reference, "secrets_backend": self.backend})

    def get(self, reference: str) -> str:
        path = parse_reference(reference)
        try:
            return self._read()[path]
        except KeyError:
            raise SecretNotFound(reference) from None

    def delete(self, reference: str) -> None:
        path = parse_reference(reference)
        with self._locked():
            secrets = self._read()
            if secrets.pop(path, None) is None:
                return
            self._write(secrets)
        get_logger().info("secret deleted", extra={"reference": reference, "secrets_backend": self.backend})

    def exists(self, reference: str) -> bool:
        return parse_reference(reference) in self._read()

    def list(self, prefix_reference: str) -> builtins.list[str]:
        prefix = parse_prefix(prefix_reference)
        return sorted(
            reference_for(path) for path in self._read() if not is_arn(path) and is_under(path, prefix)
        )

    # -- the file --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A fresh descriptor per call: flock locks belong to the open file description, so this
        # excludes other threads of this process as well as other processes.
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _tighten_permissions(self) -> None:
        for path in (self.path, self.lock_path):
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                os.chmod(path, _FILE_MODE)
                get_logger().warning(
                    "secrets file was readable by others; permissions tightened to 0600",
                    extra={"path": str(path), "previous_mode": oct(mode)},
                )

    def _read(self) -> dict[str, str]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            document = json.loads(raw)
        except ValueError:
            # No chaining: the decode error carries the document, i.e. the secrets.
            raise SecretsError(f"secrets file {self.path} is not valid JSON; fix or remove it") from None
        secrets = document.get("secrets") if isinstance(document, dict) else None
        if not isinstance(secrets, dict) or not all(isinstance(v, str) for v in secrets.values()):
            raise SecretsError(
                f"secrets file {self.path} is not a secrets store (no 'secrets' object of strings)"
            )
        return secrets

    def _write(self, secrets: dict[str, str]) -> None:
        body = json.dumps({"version": _FORMAT_VERSION, "secrets": secrets}, indent=2, sort_keys=True)
        # mkstemp creates the file 0600 whatever the umask, so the value is never briefly world-readable.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), _FILE_MODE)  # exactly 0600 even under an unusual umask
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._fsync_directory()

    def _fsync_directory(self) -> None:
        """Make the rename itself durable across a power loss."""
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
