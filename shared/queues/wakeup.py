"""Waking a local queue's waiting consumers at once, in this process and in the others sharing its file.

In this process a publish bumps the queue's generation under a condition variable. Across processes,
each process that waits on a queue file listens on one unix datagram socket and leaves a marker for it in
`<queue file>.wake/`; a publisher sends the logical queue name to every marker's socket after its commit,
and the listener bumps that queue's generation here. A waiter reads the generation *before* it looks
for messages and sleeps only while it is unchanged, so a publish between the look and the sleep is not
missed. Wake-ups are best effort (a full socket buffer, another network namespace, an unsupported
platform): the waiter's timed poll stays the fallback, so nothing is lost, only late.

On Linux the socket has an abstract address (no path-length limit, gone with its process) and the
marker is an empty file named by it; elsewhere the marker is the socket file itself when its path fits.
A marker whose socket no longer answers (its process died) is removed by the next publisher.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import sys
import threading
import uuid
from collections import defaultdict
from pathlib import Path

_ABSTRACT = sys.platform.startswith("linux")
_MAX_PATH = 100  # sun_path holds 104-108 bytes depending on the platform
_PREFIX = "orch-queue-wake-"


class Wakeups:
    """One queue file's wake-ups in this process (shared by every `LocalQueue` on that file)."""

    def __init__(self, queue_file: Path) -> None:
        self.directory = Path(f"{queue_file}.wake")
        self._lock = threading.Lock()
        self._conds: dict[str, threading.Condition] = {}
        """One condition per queue, all on `_lock`: a publish wakes that queue's waiters only, not every
        consumer thread of the process (which took ~6 % of the stack's CPU with 50 engineering tasks)."""
        self._generations: dict[str, int] = defaultdict(int)
        self.interruptions = 0
        """How often `interrupt` ran: a receive that sees it move returns what it has."""
        self._listen_lock = threading.Lock()
        self._listening_pid: int | None = None
        self._marker: Path | None = None
        self._sender: socket.socket | None = None

    # -- this process --------------------------------------------------------------------

    def _condition(self, queue: str) -> threading.Condition:
        """`queue`'s condition (called with `_lock` held)."""
        cond = self._conds.get(queue)
        if cond is None:
            cond = self._conds[queue] = threading.Condition(self._lock)
        return cond

    def generation(self, queue: str) -> int:
        with self._lock:
            return self._generations[queue]

    def wait(self, queue: str, seen: int, timeout: float) -> None:
        """Until `queue`'s generation moves on from `seen`, or `timeout` seconds."""
        with self._lock:
            self._condition(queue).wait_for(lambda: self._generations[queue] != seen, timeout)

    def bump(self, queue: str) -> None:
        with self._lock:
            self._generations[queue] += 1
            self._condition(queue).notify_all()

    def interrupt(self) -> None:
        """Wake every waiter on every queue and end their waits (a stopping consumer sees its stop flag)."""
        with self._lock:
            self.interruptions += 1
            for queue in list(self._generations):
                self._generations[queue] += 1
            for cond in self._conds.values():
                cond.notify_all()

    # -- other processes -----------------------------------------------------------------

    def notify(self, queue: str) -> None:
        """A message on `queue` became visible: wake the waiters here and in the other processes."""
        self.bump(queue)
        try:
            entries = list(os.scandir(self.directory))
        except OSError:  # nobody listens yet (or the directory is gone): the poll covers it
            return
        payload = queue.encode()
        for entry in entries:
            if self._marker is not None and entry.path == str(self._marker):
                continue  # this process: bumped above
            self._send(entry, payload)

    def _send(self, entry: os.DirEntry[str], payload: bytes) -> None:
        address = f"\0{_PREFIX}{entry.name}" if entry.is_file() else entry.path
        try:
            self._sending_socket().sendto(payload, address)
        except (ConnectionRefusedError, FileNotFoundError):  # its process is gone
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        except OSError:  # a full buffer, a platform without the address kind: that waiter polls
            return

    def _sending_socket(self) -> socket.socket:
        if self._sender is None:
            sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.setblocking(False)
            self._sender = sender
        return self._sender

    def listen(self) -> bool:
        """Listen for other processes' publishes (once per process); whether wake-ups can arrive."""
        pid = os.getpid()
        if self._listening_pid == pid:
            return True
        with self._listen_lock:
            if self._listening_pid == pid:
                return True
            listener = self._bind()
            if listener is None:
                return False
            threading.Thread(
                target=self._receive_forever, args=(listener,), name="queue-wakeups", daemon=True
            ).start()
            self._listening_pid = pid
            self._sender = None  # a forked child's copy belongs to its parent
            return True

    def _bind(self) -> socket.socket | None:
        token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        marker = self.directory / token
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if _ABSTRACT:
                listener.bind(f"\0{_PREFIX}{token}")
                marker.touch(mode=0o600)
            elif len(str(marker)) <= _MAX_PATH:
                listener.bind(str(marker))
            else:
                listener.close()
                return None
        except OSError:
            listener.close()
            return None
        self._marker = marker
        atexit.register(_remove, marker)
        return listener

    def _receive_forever(self, listener: socket.socket) -> None:
        while True:
            try:
                payload = listener.recv(512)
            except OSError:  # closed under us: the poll carries on alone
                return
            self.bump(payload.decode(errors="replace"))


def _remove(marker: Path) -> None:
    with contextlib.suppress(OSError):
        marker.unlink()


_registry: dict[str, Wakeups] = {}
_registry_lock = threading.Lock()


def wakeups_for(queue_file: Path) -> Wakeups:
    key = str(queue_file.resolve())
    with _registry_lock:
        found = _registry.get(key)
        if found is None:
            found = _registry[key] = Wakeups(Path(key))
        return found
