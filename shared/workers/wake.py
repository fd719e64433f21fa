"""Waking an idle worker's wrapper the moment a message for it is stored (workers on the API's machine).

An idle wrapper asks the API for its next message with a growing pause. A wrapper the embedded runtime
launched (`WAKE_ENV` set) spends that pause waiting on a unix datagram socket of its own, bound to an
abstract address named by its worker id, and the API sends one datagram there after it has stored a
message for that worker. So the message is taken at once, and the pause can be `WOKEN_PAUSE_S` from the
start instead of 0.1 s doubling to a second: fewer empty asks (each one a request and a query; an
engineering task's worker made 7-8, most of them empty, while its graph worked). Wake-ups are best effort (a
platform without abstract sockets, a worker in another network namespace, a full buffer): the timed ask
stays the fallback, so a message is never lost, only as late as the pause.

A datagram left in the socket is not lost either: the wrapper drains it before each ask, and one that
arrives between the ask and the wait ends the wait at once.
"""

from __future__ import annotations

import contextlib
import select
import socket
import sys
import time

WAKE_ENV = "ORCH_WORKER_WAKE"
"""Set to 1 in a worker's environment by a runtime whose workers share the API's network namespace."""
WOKEN_PAUSE_S = 5.0
"""The pause between an idle wrapper's asks while it can be woken (0.1 s doubling to 1 s while it cannot)."""
_ABSTRACT = sys.platform.startswith("linux")
_PREFIX = "orch-worker-wake-"


def _address(worker_id: str) -> str:
    return f"\0{_PREFIX}{worker_id}"


def wake(worker_id: str) -> bool:
    """Tell `worker_id`'s wrapper a message waits (whether a listener took the datagram)."""
    if not _ABSTRACT:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        try:
            sender.sendto(b"1", _address(worker_id))
        except OSError:  # nobody listens (another namespace, a process gone), or its buffer is full
            return False
    return True


class WakeListener:
    """A wrapper's end: `wait` returns early when the API wakes this worker."""

    def __init__(self, worker_id: str) -> None:
        self._socket: socket.socket | None = None
        if not _ABSTRACT:
            return
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            listener.bind(_address(worker_id))
        except OSError:  # the address is taken: this worker falls back to asking on a timer
            listener.close()
            return
        listener.setblocking(False)
        self._socket = listener

    @property
    def listening(self) -> bool:
        return self._socket is not None

    def drain(self) -> int:
        """Forget the wake-ups so far (called before asking: the ask sees what they announced); how many
        there were (one per message stored)."""
        if self._socket is None:
            return 0
        count = 0
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                self._socket.recv(64)
                count += 1
        return count

    def wait(self, timeout_s: float) -> bool:
        """Up to `timeout_s`; True when woken."""
        if self._socket is None:
            time.sleep(timeout_s)
            return False
        ready, _, _ = select.select([self._socket], [], [], timeout_s)
        return bool(ready)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
