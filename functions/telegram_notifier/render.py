"""What the user reads: one status line per task, and the final message. Pure functions.

Plain text (no parse_mode), so nothing a task, a project or an agent writes can break the
markup or inject any: `<`, `&`, `*` and `_` reach the user as typed. Telegram turns URLs into
links by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.contracts.api import Task, TaskEvent, TaskStatus, TaskType
from shared.contracts.notices import IncidentPush
from shared.contracts.spend import Gate
from shared.telegram.client import inline_keyboard
from shared.telegram.texts import split_text

MAX_STATUS_DETAIL = 300
"""The status line stays short: it is edited in place and must fit one message."""
MAX_GATE_SUMMARY = 3000
"""What waits for a person (a plan, a release, the last test output) may take most of the status
message: it has to be read to be answered. The rest of the 4096 is the head and the instructions."""
MAX_ERROR_CHARS = 6000
"""Long enough for a failing test's output; the final message is split at 4096 if needed."""
_TRACEBACK = "Traceback (most recent call last):"


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _latest(events: Sequence[TaskEvent], field: str) -> object | None:
    for event in reversed(events):
        value: object = getattr(event, field)
        if value not in (None, ""):
            return value
    return None


def _tail(text: str, limit: int) -> str:
    """The end of `text` (test output ends with what failed), whole lines where it can."""
    text = "\n".join(line.rstrip() for line in text.strip().splitlines())
    if len(text) <= limit:
        return text
    cut = text[-(limit - 1) :]
    newline = cut.find("\n")
    return "…" + (cut[newline:] if 0 <= newline < limit // 2 else cut)


_GATE_WHAT = {"plan": "the plan", "deploy": "the deploy"}


def _waiting_for_person(head: str, task: Task, gate: Gate | None, events: Sequence[TaskEvent]) -> str:
    """The status message of a task parked at a gate: what is to be answered, and how."""
    summary = gate.summary if gate is not None else (events[-1].message if events else "")
    if task.status == TaskStatus.WAITING_APPROVAL:
        what = _GATE_WHAT.get(gate.kind, "this step") if gate is not None else "this step"
        lines = [f"{head} · waiting for your approval of {what}"]
        if summary.strip():
            lines.append(_tail(summary, MAX_GATE_SUMMARY))
        lines.append("Approve or reject it with the buttons below.")
        return "\n".join(lines)
    lines = [f"{head} · waiting for your guidance"]
    if summary.strip():
        lines.append(_tail(summary, MAX_GATE_SUMMARY))
    lines.append(f"Reply to this message with guidance for the next round, or /cancel {task.id}")
    return "\n".join(lines)


def status_text(task: Task, project_name: str, events: Sequence[TaskEvent], gate: Gate | None = None) -> str:
    """e.g. `blog · engineering · 50% [tester] running make test`, from the task's current state;
    a task waiting for its person shows the `gate`'s summary and what to do.

    Rendered from the task and its latest events (not from the event that woke the notifier):
    a standard queue may deliver events out of order.
    """
    head = f"{project_name} · {task.type.value}"
    if task.status in (TaskStatus.WAITING_APPROVAL, TaskStatus.WAITING_HUMAN_REVIEW):
        return _waiting_for_person(head, task, gate, events)
    if task.status == TaskStatus.QUEUED:
        return f"{head} · queued"
    if task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED):
        return f"{head} · {task.status.value.lower()}"
    parts: list[str] = []
    pct = _latest(events, "progress_pct")
    if pct is not None:
        parts.append(f"{pct}%")
    step = _latest(events, "current_step")
    if step:
        parts.append(f"[{_short(str(step), 60)}]")
    message = events[-1].message if events else ""
    if task.status == TaskStatus.WAITING_INPUT:
        parts.append("waiting: " + (_short(message, MAX_STATUS_DETAIL) if message else "for input"))
    elif message:
        parts.append(_short(message, MAX_STATUS_DETAIL))
    return f"{head} · {' '.join(parts) or 'running'}"


APPROVE, REJECT = "approve", "reject"


def gate_callback(action: str, task_id: str) -> str:
    """The callback_data of a gate button: `gate:approve:<task id>` / `gate:reject:<task id>`."""
    return f"gate:{action}:{task_id}"


def status_keyboard(task: Task) -> dict[str, Any] | None:
    """[Approve] [Reject] under the status message while the task waits for approval; None otherwise,
    so the edit that follows the answer takes the buttons away."""
    if task.status != TaskStatus.WAITING_APPROVAL:
        return None
    return inline_keyboard(
        [("✅ Approve", gate_callback(APPROVE, task.id)), ("❌ Reject", gate_callback(REJECT, task.id))]
    )


_INCIDENT_MARK = {
    "service_down": "🔴",
    "server_unreachable": "🔴",
    "repo_missing": "⚠️",
    "service_up": "🟢",
    "server_up": "🟢",
    "repo_back": "🟢",
    "service_redeployed": "🔁",
}


def incident_text(push: IncidentPush) -> str:
    """One incident as its owner reads it, e.g. `🔴 blog is DOWN: https://... does not answer (...)`."""
    incident = push.incident
    mark = _INCIDENT_MARK.get(incident.kind, "📣")
    when = incident.created_at.strftime("%Y-%m-%d %H:%M UTC")
    return f"{mark} {_short(incident.message, MAX_ERROR_CHARS)}\n({when})"


def plain_error(error: str | None) -> str:
    """The reason in plain words: no traceback frames, whitespace tidied, trimmed."""
    text = (error or "").strip()
    if _TRACEBACK in text:
        before, _, trace = text.partition(_TRACEBACK)
        lines = [line.strip() for line in trace.splitlines() if line.strip()]
        last = lines[-1] if lines else ""
        text = "\n".join(p for p in (before.strip(), last) if p)
    text = "\n".join(line.rstrip() for line in text.splitlines() if line.strip())
    if not text:
        return "no reason was given"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1].rstrip() + "…"


def _completed(task: Task, project_name: str) -> str:
    result = task.result or {}
    if task.type == TaskType.ENGINEERING:
        lines = [f"✅ {project_name}: the change is done."]
        commit, branch = result.get("commit_sha"), result.get("branch")
        if commit or branch:
            where = f"commit {str(commit)[:12]}" if commit else "a commit"
            lines.append(where + (f" on branch {branch}" if branch else ""))
        if result.get("pr_url"):
            lines.append(f"Pull request: {result['pr_url']}")
        return "\n".join(lines)
    if task.type == TaskType.DEPLOY:
        url = result.get("deployed_url")
        return f"✅ {project_name} is live: {url}" if url else f"✅ {project_name} is deployed."
    if task.type == TaskType.UNDEPLOY:
        return f"✅ {project_name} is no longer deployed."
    return f"✅ {project_name} · {task.type.value}: done."


def final_text(task: Task, project_name: str) -> str | None:
    """The outcome message of a finished task (None while it runs)."""
    if task.status == TaskStatus.COMPLETED:
        return _completed(task, project_name)
    if task.status == TaskStatus.FAILED:
        return f"❌ {project_name} · {task.type.value} failed: {plain_error(task.error)}"
    if task.status == TaskStatus.CANCELLED:
        return f"🚫 {project_name} · {task.type.value} was cancelled."
    return None


def final_pieces(task: Task, project_name: str) -> list[str]:
    """The final message cut into Telegram-sized pieces (4096 characters at most)."""
    text = final_text(task, project_name)
    return split_text(text) if text else []
