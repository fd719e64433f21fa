"""`orchestrator queue ...`: see and repair the queues on whichever backend is configured."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cli.context import JsonFlag
from cli.errors import CliError, ExitCode
from cli.output import print_json, print_table

if TYPE_CHECKING:
    from shared.queues import QueuePort

app = typer.Typer(help="Inspect and repair the message queues.", no_args_is_help=True)

QueueArg = Annotated[str, typer.Argument(help="Logical queue name, e.g. engineering:queue.")]


def _queue() -> QueuePort:
    from shared.queues import build_queue

    return build_queue()


def _check_queue(name: str) -> str:
    from shared.contracts import QUEUES

    if name not in QUEUES:
        raise CliError(f"unknown queue {name!r}; known: {', '.join(QUEUES)}", ExitCode.NOT_FOUND)
    return name


@app.command("stats")
def stats(json_output: JsonFlag = False) -> None:
    """Per logical queue: visible, in flight, in the DLQ."""
    port = _queue()
    rows = port.stats()
    if json_output:
        print_json(
            [{"queue": s.queue, "visible": s.visible, "in_flight": s.in_flight, "dlq": s.dead} for s in rows]
        )
        return
    print_table(
        f"queues ({port.backend})",
        ["queue", "visible", "in flight", "dlq"],
        [(s.queue, s.visible, s.in_flight, s.dead) for s in rows],
    )


@app.command("dlq")
def dlq(
    queue: QueueArg,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many messages.")] = 100,
    json_output: JsonFlag = False,
) -> None:
    """The dead messages of a queue, with receive count and (where known) why they died."""
    name = _check_queue(queue)
    letters = _queue().dead_letters(name, limit=limit)
    if json_output:
        print_json(
            [
                {
                    "message_id": d.message_id,
                    "receive_count": d.receive_count,
                    "sent_at": d.sent_at.isoformat() if d.sent_at else None,
                    "reason": d.reason,
                    "body": d.body,
                }
                for d in letters
            ]
        )
        return
    if not letters:
        typer.echo(f"{name}: DLQ is empty")
        return
    print_table(
        f"{name} DLQ ({len(letters)})",
        ["message id", "receives", "sent", "reason", "body"],
        [
            (
                d.message_id,
                d.receive_count,
                d.sent_at.isoformat(timespec="seconds") if d.sent_at else "",
                d.reason or "",
                d.body[:60] + ("…" if len(d.body) > 60 else ""),
            )
            for d in letters
        ],
    )


@app.command("redrive")
def redrive(queue: QueueArg, json_output: JsonFlag = False) -> None:
    """Move a queue's dead messages back onto it."""
    name = _check_queue(queue)
    moved = _queue().redrive(name)
    if json_output:
        print_json({"queue": name, "moved": moved})
    else:
        typer.echo(f"{name}: moved {moved} message(s) from the DLQ back to the queue")
