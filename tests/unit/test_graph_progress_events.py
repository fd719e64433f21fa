"""A graph's progress events go out together (shared.graphs.progress): held until the graph's next request
that changes something, so nobody sees a change before the events leading up to it, and at most a
second when it changes nothing for a while."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from shared.api_client import ApiClient, NotFoundError
from shared.graphs.driver import event_sender
from shared.graphs.progress import HeldEvents

TASK = "0f0e0d0c-0b0a-4909-8807-060504030201"


class _Recorder:
    def __init__(self, fail_events: bool = False) -> None:
        self.calls: list[tuple[str, str, list[str]]] = []
        self.fail_events = fail_events
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content or b"null")
        messages = [e["message"] for e in body["events"]] if path.endswith("/events") else []
        with self.lock:
            self.calls.append((request.method, path.rsplit("/", 1)[-1], messages))
        if path.endswith("/events"):
            if self.fail_events:
                return httpx.Response(503, json={"code": "unavailable", "message": "busy"})
            return httpx.Response(200, json=[])
        if path.endswith("/lease"):
            return httpx.Response(200, json={"task_id": TASK, "holder": "h", "until": None, "acquired": True})
        return httpx.Response(404, json={"code": "not_found", "message": "no"})


def _api(recorder: _Recorder) -> ApiClient:
    return ApiClient("http://api.test", api_key="k", transport=httpx.MockTransport(recorder))


def _event(sender: Any, message: str) -> None:
    sender({"task_id": TASK, "correlation_id": None}, "progress", message, "step", 10)


def test_events_wait_for_the_next_change_and_go_out_together_before_it() -> None:
    recorder = _Recorder()
    api = _api(recorder)
    event = event_sender(api)

    _event(event, "one")
    _event(event, "two")
    with pytest.raises(NotFoundError):
        api.get_task(TASK)  # a read: the events still wait
    assert [c[0] for c in recorder.calls] == ["GET"]
    api.take_lease(TASK, "h")  # a change: the events first

    assert recorder.calls[1:] == [("POST", "events", ["one", "two"]), ("POST", "lease", [])]


def test_events_go_out_within_the_hold_when_nothing_changes() -> None:
    recorder = _Recorder()
    held = HeldEvents(_api(recorder), hold_s=0.05)
    held.add(TASK, {"type": "progress", "message": "merging"})
    deadline = time.monotonic() + 5
    while not recorder.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert recorder.calls == [("POST", "events", ["merging"])]
    assert held.held() == 0


def test_the_flusher_ends_when_idle_and_the_next_event_starts_another() -> None:
    recorder = _Recorder()
    held = HeldEvents(_api(recorder), hold_s=0.02, idle_s=0.1)
    for message in ("first", "second"):
        # when
        held.add(TASK, {"type": "progress", "message": message})
        assert held.flusher_running()
        deadline = time.monotonic() + 5
        while held.flusher_running() and time.monotonic() < deadline:
            time.sleep(0.01)
        # then: sent within the hold, and no thread is left once idle
        assert not held.flusher_running()
    assert recorder.calls == [("POST", "events", ["first"]), ("POST", "events", ["second"])]


def test_each_thread_holds_its_own_and_a_failed_send_fails_nothing() -> None:
    recorder = _Recorder(fail_events=True)
    api = _api(recorder)
    held = HeldEvents(api, hold_s=60)
    api.before_change(held.flush)
    held.add(TASK, {"type": "progress", "message": "mine"})

    other = threading.Thread(target=lambda: held.add(TASK, {"type": "progress", "message": "theirs"}))
    other.start()
    other.join()
    api.take_lease(TASK, "h")  # sends this thread's only; the refused send is logged, the lease goes on

    assert recorder.calls == [("POST", "events", ["mine"]), ("POST", "lease", [])]
    held.flush(other.ident)
    assert recorder.calls[-1] == ("POST", "events", ["theirs"])


def test_a_client_that_cannot_say_before_a_change_sends_each_event_at_once() -> None:
    sent: list[tuple[str, list[Any]]] = []

    class Plain:
        def append_events(self, task_id: str, events: list[Any]) -> None:
            sent.append((task_id, events))

    _event(event_sender(Plain()), "now")  # type: ignore[arg-type]
    assert [e["message"] for _, events in sent for e in events] == ["now"]


def test_two_holders_on_one_client_send_in_the_order_they_registered() -> None:
    """One holder's send must not run the others' first (a nested flush put a later event first)."""
    recorder = _Recorder()
    api = _api(recorder)
    first, second = event_sender(api), event_sender(api)
    _event(first, "earlier")
    _event(second, "later")

    api.flush_before_change()

    assert [messages for _, path, messages in recorder.calls if path == "events"] == [["earlier"], ["later"]]


def test_a_holders_send_runs_no_other_holders_flush() -> None:
    """A send made while flushing runs no client callbacks: two holders flushed by two threads at once
    cannot each wait for the other's lock."""
    recorder = _Recorder()
    api = _api(recorder)
    ran: list[str] = []
    api.before_change(lambda: ran.append("callback"))
    held = HeldEvents(api, hold_s=60)
    api.before_change(held.flush)
    held.add(TASK, {"type": "progress", "message": "mine"})

    held.flush()

    assert ran == [], "the send itself ran no callback"
    assert recorder.calls == [("POST", "events", ["mine"])]


def test_closing_the_client_sends_what_every_thread_still_holds() -> None:
    """A function reset or a stopped stack closes the graph's client: what its threads held (up to a second
    of progress) goes out first instead of failing on a closed client."""
    recorder = _Recorder()
    api = _api(recorder)
    event = event_sender(api)
    _event(event, "mine")
    other = threading.Thread(target=lambda: _event(event, "theirs"))
    other.start()
    other.join()

    api.close()

    sent = sorted(messages for _, path, messages in recorder.calls if path == "events")
    assert sent == [["mine"], ["theirs"]]
    api.close()  # a second close sends nothing again
    assert len([c for c in recorder.calls if c[1] == "events"]) == 2
