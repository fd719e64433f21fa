"""A client that polls a URL every 100 ms on a thread, as a person's browser would hit a project during a
deploy: each poll is a new connection; it records what every poll saw, so a test can ask whether the
stable address ever failed and how long the longest gap without a 200 lasted."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from types import TracebackType


@dataclass(frozen=True)
class Poll:
    at: float
    status: int | None
    body: bytes = b""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class StablePoller:
    url: str
    interval_s: float = 0.1
    timeout_s: float = 2.0
    polls: list[Poll] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stable-poller", daemon=True)

    def _poll_once(self) -> Poll:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as response:
                return Poll(started, response.status, response.read())
        except urllib.error.HTTPError as error:
            return Poll(started, error.code, error.read(), str(error))
        except (urllib.error.URLError, OSError) as error:
            return Poll(started, None, b"", f"{type(error).__name__}: {error}")

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.polls.append(self._poll_once())
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> StablePoller:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def failures(self) -> list[Poll]:
        return [poll for poll in self.polls if not poll.ok]

    def longest_gap_s(self) -> float:
        """The longest time between the first failed poll of a run of failures and the next 200 (0.0 when
        no poll failed)."""
        longest, gap_started = 0.0, None
        for poll in self.polls:
            if not poll.ok and gap_started is None:
                gap_started = poll.at
            elif poll.ok and gap_started is not None:
                longest, gap_started = max(longest, poll.at - gap_started), None
        if gap_started is not None and self.polls:
            longest = max(longest, self.polls[-1].at - gap_started)
        return longest

    def bodies(self) -> list[bytes]:
        """The distinct 200 bodies, in the order they were first seen."""
        seen: list[bytes] = []
        for poll in self.polls:
            if poll.ok and poll.body not in seen:
                seen.append(poll.body)
        return seen
