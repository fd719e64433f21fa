"""A conversation's agent session survives its worker: the adapters name their session files, the archive
carries them, and the CLI (the fake `claude`, strict like the real one) resumes from them in a new place."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from worker_image.agents import get_adapter, run_agent
from worker_image.agents.base import SessionFiles, path_slug
from worker_image.sessions import FILES_PREFIX, SessionArchiveError, clear, collect, pack, unpack

FAKES = Path(__file__).parents[1] / "fakes" / "agents"


def _claude(workspace: Path, config: Path, session_id: str | None) -> tuple[str, str | None, bool]:
    adapter = get_adapter("claude-code", {"bin": str(FAKES / "claude")})
    env = {"PATH": "/usr/bin:/bin", "CLAUDE_CONFIG_DIR": str(config)}
    result = run_agent(adapter, "hello", workspace, 20.0, lambda _e: None, session_id=session_id, env=env)
    return result.final_answer, result.session_id, adapter.session_lost(result)


def test_a_claude_session_moves_to_a_new_machine_and_resumes(tmp_path: Path) -> None:
    # given: a first run on one "machine" (its own config dir), packed after the message
    workspace = tmp_path / "ws" / "orchestrator-session-po-u1"
    workspace.mkdir(parents=True)
    first_config = tmp_path / "machine-1"
    answer, session_id, _ = _claude(workspace, first_config, None)
    adapter = get_adapter("claude-code", {"bin": str(FAKES / "claude")})
    files = adapter.session_files(workspace, {"CLAUDE_CONFIG_DIR": str(first_config)}, session_id)
    assert files is not None and files.root == first_config / "projects" / path_slug(workspace)
    assert [p.name for p in collect(files)] == [f"{session_id}.jsonl"]
    archive = pack("claude-code", session_id, files)
    assert archive is not None and "(turn" not in answer
    # when: a second machine without the files cannot resume...
    second_config = tmp_path / "machine-2"
    _, _, lost = _claude(workspace, second_config, session_id)
    assert lost  # "No conversation found": the wrapper then starts afresh instead of failing
    # ...and with them restored, it continues the same conversation
    restored = unpack(
        archive,
        "claude-code",
        lambda sid: adapter.session_files(workspace, {"CLAUDE_CONFIG_DIR": str(second_config)}, sid),
    )
    assert restored.session_id == session_id and restored.files == 1
    answer, resumed_id, lost = _claude(workspace, second_config, session_id)
    assert not lost and resumed_id == session_id and answer.endswith("(turn 2)")


def test_clear_removes_only_this_sessions_files(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    (root / "2026" / "11").mkdir(parents=True)
    mine = root / "2026" / "11" / "rollout-1-abc.jsonl"
    other = root / "2026" / "11" / "rollout-2-xyz.jsonl"
    mine.write_text("m")
    other.write_text("o")
    files = get_adapter("codex").session_files(tmp_path, {"CODEX_HOME": str(tmp_path)}, "abc")
    assert files is not None and collect(files) == [mine]
    clear(files)
    assert not mine.exists() and other.exists()  # another thread's files (the person's own codex) stay
    command_files = get_adapter("command", {"command": "true"}).session_files(tmp_path / "ws", {}, None)
    assert command_files is not None and command_files.root == tmp_path / "ws.session"


def _archive(members: dict[str, bytes], agent: str = "command", symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        manifest = json.dumps({"version": 1, "agent": agent, "session_id": None}).encode()
        for name, data in {"manifest.json": manifest, **members}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            link = tarfile.TarInfo(symlink)
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/passwd"
            tar.addfile(link)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_archive({FILES_PREFIX + "../escape.txt": b"x"}), "unsafe path"),
        (_archive({FILES_PREFIX + "ok.txt": b"x"}, symlink=FILES_PREFIX + "link"), "unexpected member"),
        (_archive({"elsewhere.txt": b"x"}), "unexpected member"),
        (_archive({FILES_PREFIX + "ok.txt": b"x"}, agent="claude-code"), "saved by agent 'claude-code'"),
        (b"not a tarball", "not a session archive"),
    ],
)
def test_an_archive_cannot_write_outside_its_folder(tmp_path: Path, data: bytes, why: str) -> None:
    root = tmp_path / "root"
    with pytest.raises(SessionArchiveError, match=why):
        unpack(data, "command", lambda _sid: SessionFiles(root))
    assert not (tmp_path / "escape.txt").exists()


def test_nothing_to_carry_is_no_archive(tmp_path: Path) -> None:
    assert pack("command", None, SessionFiles(tmp_path / "missing")) is None
    (tmp_path / "mem").mkdir()
    (tmp_path / "mem" / "history.jsonl").write_text("{}\n")
    data = pack("command", None, SessionFiles(tmp_path / "mem"))
    assert data is not None
    restored = unpack(data, "command", lambda _sid: SessionFiles(tmp_path / "again"))
    assert restored.files == 1 and (tmp_path / "again" / "history.jsonl").read_text() == "{}\n"
    assert (tmp_path / "again" / "history.jsonl").stat().st_mode & 0o777 == 0o600
