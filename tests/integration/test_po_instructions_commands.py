"""Every `orchestrator ...` command the Product Owner's instructions show runs against the real CLI and
an embedded stack, as the PO runs it (a user-scope key of the person): so the instructions cannot
drift from the CLI again (they once said `secret set NAME KEY VALUE`, which the CLI refuses).

Placeholders are filled with real values: PROJECT (an existing project of the person; a new name
for `project create`), TASK (a task of theirs), SERVER (`localhost`, built in), NAME (a secret
name), N (a release number), TEXT (a few words), DATE, USD, PERIOD and POLICY (issue 21's usage,
budgets and approval policy). An optional part in brackets runs both with and
without it.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.errors import ExitCode
from functions.product_owner.instructions import PO_INSTRUCTIONS
from shared.api_client import ApiClient
from tests.e2e.conftest import CliRunner, cli_runner
from tests.embedded_support import start_stack

NOT_OK_BY_DESIGN = {
    ("deploy", "status"): (ExitCode.NOT_FOUND,),
    ("deploy", "rollback"): (ExitCode.NOT_FOUND, ExitCode.CONFLICT),
    ("task", "approve"): (ExitCode.CONFLICT,),
    ("task", "reject"): (ExitCode.CONFLICT,),
    ("task", "resume"): (ExitCode.CONFLICT,),
}
"""Commands whose honest answer here is not exit 0: nothing of the project ever deployed (the stack runs
no consumers, so `deploy start` only queues), so there is no release N (not found) and none serving to
roll back from (conflict); no task waits at a gate (no graph runs), so approve / reject / resume reach
the API and are refused (conflict). Any other non-zero exit fails the test."""
_SPAN = re.compile(r"`(orchestrator [^`]+)`")
_FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)
_OPTIONAL = re.compile(r"\[([^\]]+)\]")


def shown_commands(text: str) -> list[str]:
    """The `orchestrator ...` command lines in code spans and code blocks, in order, no duplicates."""
    found = _SPAN.findall(_FENCE.sub("", text))
    for block in _FENCE.findall(text):
        found += [line.strip() for line in block.splitlines() if line.strip().startswith("orchestrator ")]
    return list(dict.fromkeys(found))


def variants(command: str) -> list[str]:
    """`a [b] c` → `a b c` and `a c`: every optional part with and without."""
    parts = _OPTIONAL.split(command)  # text, optional, text, optional, ...
    texts, optional = parts[0::2], parts[1::2]
    out = []
    for keep in itertools.product((True, False), repeat=len(optional)):
        pieces = [texts[0]]
        for used, part, after in zip(keep, optional, texts[1:], strict=True):
            pieces += [part if used else "", after]
        out.append(" ".join("".join(pieces).split()))
    return out


def test_the_extraction_sees_code_spans_blocks_and_optional_parts() -> None:
    text = "run `orchestrator a X [--b c] --json`, not `ls`\n```sh\norchestrator d Y\nrm -rf /\n```\n`orchestrator a X [--b c] --json`"
    assert shown_commands(text) == ["orchestrator a X [--b c] --json", "orchestrator d Y"]
    assert variants("orchestrator a X [--b c] --json") == [
        "orchestrator a X --b c --json",
        "orchestrator a X --json",
    ]


class Person:
    """The PO's view: the real CLI with the person's user-scope key, placeholders filled for them."""

    def __init__(self, run: CliRunner, url: str, key: str, project: str, task: str) -> None:
        self.run, self.env = run, {"ORCH_API_URL": url, "ORCH_API_KEY": key}
        self.values = {
            "PROJECT": project,
            "TASK": task,
            "SERVER": "localhost",
            "NAME": "API_TOKEN",
            "N": "1",
            "DATE": "2026-01-01",
            "USD": "5",
            "PERIOD": "task",
            "POLICY": "deploy,plan",
        }
        self.created = 0

    def argv(self, command: str) -> list[str]:
        values = dict(self.values, TEXT="a small blog with comments")
        if command.startswith("orchestrator project create"):
            self.created += 1
            values["PROJECT"] = f"po-made-{self.created}"
        words = shlex.split(command)[1:]
        return [values.get(word, word) for word in words]


@pytest.fixture
def person(embedded_home: Path) -> Iterator[Person]:
    stack = start_stack(embedded_home)
    try:
        url = os.environ["ORCH_API_URL"]
        with ApiClient(url, stack.admin_key) as admin:
            user = admin.add_user("po-person", telegram_id=8080)
            key = admin.create_api_key(user.id, "product-owner", ["user"]).key
        with ApiClient(url, key) as as_person:
            as_person.create_project("po-check", "checks the PO's commands")
            task = as_person.start_engineering("po-check", "a first task").id
        yield Person(cli_runner(embedded_home), url, key, "po-check", task)
    finally:
        stack.stop()


@pytest.mark.slow
def test_every_command_in_the_po_instructions_runs_against_the_real_cli(person: Person) -> None:
    commands = shown_commands(PO_INSTRUCTIONS)
    shown = {" ".join(c.split()[1:3]) for c in commands}
    # the instructions keep showing the commands the PO needs (a vacuous pass is not a pass)
    assert {
        "project list",
        "project create",
        "engineering start",
        "task show",
        "secret list",
        "secret set",
        "deploy history",
        "deploy rollback",
        "budget show",
        "budget set",
        "project set",
        "task approve",
        "task reject",
        "task resume",
    } <= shown
    assert any(c.startswith("orchestrator usage ") for c in commands)
    assert not [c for c in commands if "secret set" in c and len(c.split()) != 5], (
        "secret set takes PROJECT NAME"
    )
    failures = []
    for command in commands:
        for line in variants(command):
            argv = person.argv(line)
            stdin = "a-value-typed-by-the-person\n" if argv[:2] == ["secret", "set"] else None
            result = person.run(*argv, env=person.env, input=stdin)
            if result.returncode not in NOT_OK_BY_DESIGN.get((argv[0], argv[1]), (ExitCode.OK,)):
                kind = "usage error" if result.returncode == ExitCode.USAGE else f"exit {result.returncode}"
                failures.append(f"{line!r} -> {argv}: {kind}: {result.stderr.strip()[-300:]}")
            elif result.returncode == ExitCode.OK and "--json" in argv:
                json.loads(result.stdout)  # what the PO is told to read is JSON
    assert failures == [], "\n".join(failures)
