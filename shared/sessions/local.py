"""The embedded session store: one file per key under a directory of ORCH_HOME, readable by its owner only.

- key `po/x` is the file `<root>/po/x.tar.gz`; directories we create are 0700, files 0600 (an archive
  holds the whole conversation);
- a save writes a 0600 temporary file in the target's directory, fsyncs it and `os.replace`s it over the
  target, so a reader (or the next worker after a crash) sees the old archive or the new one, never half
  of one; the temporary file is removed if anything fails;
- temporary files start with `.`, which no key segment may, so they can never be mistaken for an archive.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from shared.sessions.port import ARCHIVE_SUFFIX, check_session, validate_key

_FILE_MODE = 0o600
_DIR_MODE = 0o700


class LocalSessionStore:
    """Persistent local session archives; safe to share between threads and processes (last save wins)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    def path_for(self, key: str) -> Path:
        """The file that holds `key`'s archive (whether or not it exists yet)."""
        *directories, name = validate_key(key).split("/")
        return self.root.joinpath(*directories, name + ARCHIVE_SUFFIX)

    # -- the port ------------------------------------------------------------------------

    def load(self, key: str) -> bytes | None:
        path = self.path_for(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def save(self, key: str, data: bytes) -> None:
        check_session(key, data)
        path = self.path_for(key)
        self._make_private_dirs(path.parent)
        # mkstemp creates the file 0600 whatever the umask: the conversation is never world-readable.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), _FILE_MODE)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_directory(path.parent)

    def delete(self, key: str) -> None:
        # Empty directories stay: removing them would race with a concurrent save into the same one.
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            self.path_for(key).unlink()

    # -- directories -----------------------------------------------------------------------

    def _make_private_dirs(self, directory: Path) -> None:
        """Create the root and the key's directories below it that are missing, each 0700.

        Only directories created here are chmod-ed (mkdir's mode obeys the umask); existing ones are the
        operator's business. A directory another process creates meanwhile is fine.
        """
        if not self.root.exists():
            self.root.parent.mkdir(parents=True, exist_ok=True)
        parts = directory.relative_to(self.root).parts
        for depth in range(len(parts) + 1):
            current = self.root.joinpath(*parts[:depth])
            try:
                current.mkdir()
            except FileExistsError:
                continue
            os.chmod(current, _DIR_MODE)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable across a power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
