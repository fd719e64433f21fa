"""Carrying a conversation's agent session from one worker to the next.

A worker lives while its conversation is active (a Product Owner idles out after 10 minutes), but the
person expects the next worker to remember. The CLIs resume only from their own files, so after each
message the wrapper packs the session files the adapter names (`AgentAdapter.session_files`) into
an archive and saves it in the session store (S3 in AWS, the data dir locally) through the API, which
lets a worker's token reach its own conversation's archive only; the next worker puts them back at the
same place before its first message and resumes the session id the archive names.

The archive is a tar.gz: `manifest.json` (`version`, `agent`, `session_id`, `saved_at`) and the files
under `files/`, relative to the adapter's session root. Unpacking accepts regular files only, inside
the root: an archive is data, never a way to write elsewhere.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from worker_image.agents.base import SessionFiles

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILES_PREFIX = "files/"
COMPRESS_LEVEL = 3
"""gzip 3 packs a 2.5 MB transcript in a tenth of level 9's time for a slightly larger archive
(tests/benchmarks/bench_sessions.py)."""


class SessionArchiveError(ValueError):
    """An archive that cannot be a session archive (corrupt, foreign, or unsafe)."""


@dataclass(frozen=True)
class Restored:
    session_id: str | None
    files: int


def collect(files: SessionFiles) -> list[Path]:
    """The regular files under `files.root` that match its patterns (symlinks are not followed)."""
    if not files.root.is_dir():
        return []
    found: set[Path] = set()
    for pattern in files.patterns:
        for path in files.root.glob(pattern):
            if path.is_file() and not path.is_symlink():
                found.add(path)
    return sorted(found)


def pack(agent: str, session_id: str | None, files: SessionFiles | None) -> bytes | None:
    """The archive of this session, or None when there is nothing to carry (no id and no files)."""
    paths = collect(files) if files is not None else []
    if not paths and not session_id:
        return None
    buffer = io.BytesIO()
    manifest = {"version": FORMAT_VERSION, "agent": agent, "session_id": session_id, "saved_at": time.time()}
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=COMPRESS_LEVEL) as tar:
        _add_bytes(tar, MANIFEST, json.dumps(manifest).encode())
        for path in paths:
            assert files is not None
            tar.add(path, arcname=FILES_PREFIX + path.relative_to(files.root).as_posix(), recursive=False)
    return buffer.getvalue()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def manifest_of(data: bytes) -> dict[str, Any]:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            member = tar.extractfile(MANIFEST)
            if member is None:
                raise SessionArchiveError("the session archive has no manifest")
            manifest = json.loads(member.read())
    except (tarfile.TarError, KeyError, OSError, ValueError) as exc:
        raise SessionArchiveError(f"not a session archive: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("version") != FORMAT_VERSION:
        raise SessionArchiveError("unknown session archive version")
    return manifest


def unpack(data: bytes, agent: str, locate: Callable[[str | None], SessionFiles | None]) -> Restored:
    """Put the archive's files back where `locate(session_id)` says this agent keeps them.

    Raises SessionArchiveError for a corrupt archive, one saved by another agent (its files mean nothing
    to this one), or a member that is not a regular file inside the root."""
    manifest = manifest_of(data)
    if manifest.get("agent") != agent:
        raise SessionArchiveError(f"the session was saved by agent {manifest.get('agent')!r}, not {agent!r}")
    session_id = manifest.get("session_id") if isinstance(manifest.get("session_id"), str) else None
    files = locate(session_id)
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.name == MANIFEST:
                continue
            target = _target(files, member)
            source = tar.extractfile(member)
            assert source is not None
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = target.with_name(f".{target.name}.restoring")
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
                out.write(source.read())
            os.replace(tmp, target)
            count += 1
    return Restored(session_id=session_id, files=count)


def _target(files: SessionFiles | None, member: tarfile.TarInfo) -> Path:
    if not member.isfile() or not member.name.startswith(FILES_PREFIX):
        raise SessionArchiveError(f"unexpected member {member.name!r} in a session archive")
    if files is None:
        raise SessionArchiveError("the archive has files but this agent keeps no session files")
    relative = PurePosixPath(member.name[len(FILES_PREFIX) :])
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise SessionArchiveError(f"unsafe path {member.name!r} in a session archive")
    root = files.root.resolve()
    target = (root / Path(*relative.parts)).resolve()
    if not target.is_relative_to(root):
        raise SessionArchiveError(f"path {member.name!r} leaves the session folder")
    return target


def clear(files: SessionFiles | None) -> None:
    """Remove this session's local copy (it is in the store) and the folders it leaves empty."""
    if files is None:
        return
    for path in collect(files):
        path.unlink(missing_ok=True)
    if not files.root.is_dir():
        return
    for folder in sorted((p for p in files.root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        _rmdir_if_empty(folder)
    _rmdir_if_empty(files.root)


def _rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        return  # not empty: files of other sessions stay
