"""A fake Telegram Bot API on 127.0.0.1: the methods the bot, the poller and the CLI use.

Every call is recorded (method, params, content type) so tests can check what was sent; bodies
may be form-encoded or multipart (aiogram) or JSON (the CLI and the poller). Answers have the
real Bot API shapes (`{"ok": true, "result": ...}` / `{"ok": false, "error_code", "description",
"parameters": {"retry_after"}}`), a wrong token gets 401, `getUpdates` serves injected updates
with `offset` / `limit` / `timeout` (long polling) and refuses with 409 while a webhook is set.

    with FakeTelegram(token) as telegram:
        bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(telegram.url)))
        telegram.fail("sendMessage", status=429, retry_after=1)   # the next sendMessage answers 429
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

BOT_ID = 700000001
"""The bot's user id when the token does not start with one (Telegram's tokens do: `<bot id>:<secret>`)."""
MAX_LONG_POLL_S = 5.0
"""A test never waits longer than this for getUpdates, whatever timeout the client asks for."""


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]
    """JSON-looking form values (objects, arrays, numbers) are decoded; others stay strings."""
    content_type: str
    status: int = 200
    """What the fake answered (calls made to fail by `fail()` are recorded too)."""
    at: float = field(default_factory=time.monotonic)
    result: Any = None
    """The `result` answered (e.g. the Message a sendMessage created), None for a refused call."""


@dataclass
class _Failure:
    status: int
    description: str
    retry_after: int | None
    times: int


def _decode_value(value: str) -> Any:
    if value[:1] in "[{" or value in ("true", "false", "null") or value.lstrip("-").isdigit():
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class FakeTelegram:
    def __init__(self, token: str, username: str = "orchestrator_test_bot") -> None:
        self.token = token
        self.username = username
        self.calls: list[Call] = []
        self.webhook: dict[str, Any] = {}
        self._updates: list[dict[str, Any]] = []
        self._failures: dict[str, list[_Failure]] = {}
        self._next_message_id = 1
        self.deleted: set[tuple[int, int]] = set()
        """(chat_id, message_id) of every message deleted through deleteMessage."""
        self._cond = threading.Condition()
        self._closing = False
        self.polls_waiting = 0
        """getUpdates calls now held open (long polling)."""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeTelegram:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: the tests read the recorded calls, not the access log."""

            def do_POST(self) -> None:
                fake._serve(self)

            def do_GET(self) -> None:
                fake._serve(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-telegram",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- what tests use --------------------------------------------------------------------

    def reset(self) -> None:
        """Forget calls, webhook, pending updates and planned failures (a server shared by tests)."""
        with self._cond:
            self.calls.clear()
            self.webhook = {}
            self._updates.clear()
            self._failures.clear()
            self.deleted.clear()

    def push_update(self, update: dict[str, Any]) -> None:
        """Make an update available to getUpdates."""
        with self._cond:
            self._updates.append(update)
            self._cond.notify_all()

    def fail(
        self,
        method: str,
        status: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` calls of `method` answer with this error."""
        default = "Too Many Requests: retry later" if status == 429 else "Internal Server Error"
        with self._cond:
            self._failures.setdefault(method, []).append(
                _Failure(status, description or default, retry_after, times)
            )

    def calls_to(self, method: str) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.method == method]

    def sent_texts(self) -> list[str]:
        """The texts of the messages Telegram accepted, in order."""
        return [str(c.params.get("text")) for c in self.calls_to("sendMessage") if c.status == 200]

    def wait_for(self, check: Callable[[], Any], timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError("timed out waiting on the fake Telegram")

    # -- serving ---------------------------------------------------------------------------

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        path = urlsplit(request.path).path
        prefix, _, method = path.lstrip("/").partition("/")
        length = int(request.headers.get("content-length") or 0)
        raw = request.rfile.read(length) if length else b""
        content_type = request.headers.get("content-type") or ""
        try:
            params = self._params(raw, content_type, urlsplit(request.path).query)
        except ValueError as exc:
            self._send(request, 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {exc}"})
            return
        if prefix != f"bot{self.token}":
            self._send(request, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        with self._cond:
            failure = self._take_failure(method)
        if failure is not None:
            status, body = (
                failure.status,
                {
                    "ok": False,
                    "error_code": failure.status,
                    "description": failure.description,
                },
            )
            if failure.retry_after is not None:
                body["parameters"] = {"retry_after": failure.retry_after}
        else:
            status, body = self._answer(method, params)
        with self._cond:
            self.calls.append(
                Call(method, params, content_type.split(";")[0].strip(), status, result=body.get("result"))
            )
        self._send(request, status, body)

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method) or []
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    @staticmethod
    def _params(raw: bytes, content_type: str, query: str) -> dict[str, Any]:
        params: dict[str, Any] = {k: _decode_value(v) for k, v in parse_qsl(query)}
        kind = content_type.split(";")[0].strip().lower()
        if not raw:
            return params
        if kind == "application/json":
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("JSON body must be an object")
            params.update(data)
        elif kind == "application/x-www-form-urlencoded":
            params.update(
                {k: _decode_value(v) for k, v in parse_qsl(raw.decode("utf-8"), keep_blank_values=True)}
            )
        elif kind == "multipart/form-data":
            message = BytesParser(policy=policy.HTTP).parsebytes(
                f"content-type: {content_type}\r\n\r\n".encode() + raw
            )
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                if name:
                    params[str(name)] = _decode_value(payload.decode("utf-8"))
        else:
            raise ValueError(f"unsupported content type {kind!r}")
        return params

    def _answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        try:
            return handler(params)  # type: ignore[no-any-return]
        except (KeyError, TypeError, ValueError) as exc:
            return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {exc}"}

    @staticmethod
    def _ok(result: Any) -> tuple[int, dict[str, Any]]:
        return 200, {"ok": True, "result": result}

    def _bot_user(self) -> dict[str, Any]:
        prefix = self.token.split(":", 1)[0]
        bot_id = int(prefix) if prefix.isdigit() else BOT_ID
        return {"id": bot_id, "is_bot": True, "first_name": "Orchestrator", "username": self.username}

    def _message(self, chat_id: Any, text: str, reply_markup: Any = None) -> dict[str, Any]:
        with self._cond:
            message_id = self._next_message_id
            self._next_message_id += 1
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": int(chat_id), "type": "private"},
            "from": self._bot_user(),
            "text": text,
        }
        if _has_inline_keyboard(reply_markup):  # Telegram echoes inline keyboards only
            message["reply_markup"] = reply_markup
        return message

    def keyboards(self) -> dict[tuple[int, int], Any]:
        """(chat_id, message_id) -> the inline keyboard each message shows now (None: none), as the
        sends and edits left it: an edit without reply_markup takes a keyboard away, as Telegram does."""
        shown: dict[tuple[int, int], Any] = {}
        with self._cond:
            calls = [c for c in self.calls if c.status == 200]
        for call in calls:
            if call.method == "sendMessage":
                key = (int(call.params["chat_id"]), int(call.result["message_id"]))
            elif call.method in ("editMessageText", "editMessageReplyMarkup"):
                key = (int(call.params["chat_id"]), int(call.params["message_id"]))
            else:
                continue
            markup = call.params.get("reply_markup")
            shown[key] = markup if _has_inline_keyboard(markup) else None
        return shown

    # -- methods ---------------------------------------------------------------------------

    def _m_getMe(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self._ok(self._bot_user())

    def _m_sendMessage(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = str(params["text"])
        if not text:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
        if len(text) > 4096:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}
        return self._ok(self._message(params["chat_id"], text, params.get("reply_markup")))

    def _m_editMessageText(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        message = self._message(params["chat_id"], str(params["text"]), params.get("reply_markup"))
        message["message_id"] = int(params["message_id"])
        message["edit_date"] = int(time.time())
        return self._ok(message)

    def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        markup = params.get("reply_markup")
        if markup is not None and not isinstance(markup, dict):
            return 400, {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: can't parse reply markup",
            }
        message = self._message(params["chat_id"], "", markup)
        message["message_id"] = int(params["message_id"])
        return self._ok(message)

    def _m_answerCallbackQuery(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not str(params.get("callback_query_id") or ""):
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: query id is empty"}
        if len(str(params.get("text") or "")) > 200:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: text is too long"}
        return self._ok(True)

    def answers(self) -> list[str]:
        """The texts of the accepted answerCallbackQuery calls, in order."""
        return [
            str(c.params.get("text") or "") for c in self.calls_to("answerCallbackQuery") if c.status == 200
        ]

    def _m_deleteMessage(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        key = (int(params["chat_id"]), int(params["message_id"]))
        with self._cond:
            if key in self.deleted:
                return 400, {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: message to delete not found",
                }
            self.deleted.add(key)
        return self._ok(True)

    def _m_setMyCommands(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        commands = params["commands"]
        if not isinstance(commands, list) or not all({"command", "description"} <= set(c) for c in commands):
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: can't parse commands"}
        return self._ok(True)

    def _m_sendChatAction(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if params.get("action") not in {"typing", "upload_document", "choose_sticker"}:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: wrong parameter action"}
        return self._ok(True)

    def _m_setWebhook(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        url = str(params.get("url") or "")
        with self._cond:
            if params.get("drop_pending_updates"):
                self._updates.clear()
            self.webhook = dict(params) if url else {}
        return 200, {
            "ok": True,
            "result": True,
            "description": "Webhook was set" if url else "Webhook was deleted",
        }

    def _m_deleteWebhook(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._cond:
            if params.get("drop_pending_updates"):
                self._updates.clear()
            self.webhook = {}
        return 200, {"ok": True, "result": True, "description": "Webhook was deleted"}

    def _m_getWebhookInfo(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._cond:
            info: dict[str, Any] = {
                "url": self.webhook.get("url", ""),
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }
            if self.webhook:
                info["max_connections"] = int(self.webhook.get("max_connections") or 40)
                if self.webhook.get("allowed_updates"):
                    info["allowed_updates"] = self.webhook["allowed_updates"]
        return self._ok(info)

    def _m_getUpdates(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = max(1, min(100, int(params.get("limit") or 100)))
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), MAX_LONG_POLL_S)
        with self._cond:
            if self.webhook:
                return 409, {
                    "ok": False,
                    "error_code": 409,
                    "description": "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                }
            while True:
                if offset:  # confirms (forgets) every update below the offset, as Telegram does
                    self._updates = [u for u in self._updates if int(u["update_id"]) >= offset]
                ready = self._updates[:limit]
                remaining = deadline - time.monotonic()
                if ready or remaining <= 0 or self._closing:
                    return self._ok(ready)
                self.polls_waiting += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self.polls_waiting -= 1

    # -- wire ------------------------------------------------------------------------------

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode("utf-8")
        try:
            request.send_response(status)
            request.send_header("content-type", "application/json")
            request.send_header("content-length", str(len(payload)))
            request.end_headers()
            request.wfile.write(payload)
        except OSError:
            pass  # the client went away (a stopped poller)


def _has_inline_keyboard(markup: Any) -> bool:
    return isinstance(markup, dict) and bool(markup.get("inline_keyboard"))


_update_ids = iter(range(100_000, 10**9))


def message_update(
    from_id: int,
    text: str | None = "hello",
    update_id: int | None = None,
    chat_id: int | None = None,
    first_name: str = "Tester",
    language_code: str | None = "en",
    reply_to: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Bot API Update carrying one private text message, as Telegram sends it; `reply_to` is the
    Message it replies to (e.g. a sendMessage call's `result`)."""
    uid = next(_update_ids) if update_id is None else update_id
    sender: dict[str, Any] = {"id": from_id, "is_bot": False, "first_name": first_name}
    if language_code:
        sender["language_code"] = language_code
    message: dict[str, Any] = {
        "message_id": uid % 1_000_000,
        "date": int(time.time()),
        "chat": {"id": chat_id or from_id, "type": "private", "first_name": first_name},
        "from": sender,
    }
    if reply_to is not None:
        message["reply_to_message"] = reply_to
    if text is not None:
        message["text"] = text
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return {"update_id": uid, "message": message}


def callback_update(
    from_id: int,
    data: str,
    message: dict[str, Any] | None = None,
    update_id: int | None = None,
    first_name: str = "Tester",
) -> dict[str, Any]:
    """A Bot API Update carrying one inline-button press (a CallbackQuery), as Telegram sends it;
    `message` is the message the button was on (e.g. a sendMessage call's `result`)."""
    uid = next(_update_ids) if update_id is None else update_id
    query: dict[str, Any] = {
        "id": f"cq{uid}",
        "from": {"id": from_id, "is_bot": False, "first_name": first_name},
        "chat_instance": f"ci{from_id}",
        "data": data,
    }
    if message is not None:
        query["message"] = message
    return {"update_id": uid, "callback_query": query}
