"""Exit codes are an interface: scripts and the Product Owner agent rely on them.

Every command answers with one of these (docs/cli-exit-codes.md is the same table for readers):

====  ===========  ================================================================================
code  name         when
====  ===========  ================================================================================
0     OK           it worked (a second `deploy stop` of a stopped project too: nothing to redo)
1     FAILURE      the work ran and failed (a task FAILED or CANCELLED, the API broke: its reason)
2     USAGE        the command line is wrong: a missing/invalid option, a value the API refuses
                   (422), an id prefix shorter than 6 characters or matching several ids
3     NOT_FOUND    no such project / task / worker / server / key (someone else's is not found too)
4     CONFLICT     the state forbids it now: a name taken, a task still running, a deploy in progress
5     UNREACHABLE  no API answers at the URL, or a server that is not the orchestrator API does
                   (the message names the URL), or its database was still waking up after the
                   CLI waited ~45 s for it (it pauses when idle; "waking up" is printed once)
6     AUTH         no API key, or the API refused it (wrong, revoked, or without the scope needed)
130   -            interrupted (Ctrl-C)
====  ===========  ================================================================================
"""

from __future__ import annotations

import sys
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    NOT_FOUND = 3
    CONFLICT = 4
    UNREACHABLE = 5
    AUTH = 6


class CliError(Exception):
    """Printed as one line on stderr; the process exits with `code`."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def say_waking(message: str) -> None:
    """One line on stderr while a call waits for the API's database to resume (stdout stays the answer)."""
    sys.stderr.write(f"{message}; waiting...\n")
    sys.stderr.flush()
