"""What the Product Owner consumer does with a person's message and with its workers' answers.

One PO worker per person (`po-<user_id>`), alive while the conversation is: the first message
starts it (a Fargate task takes tens of seconds), later ones go to the same worker, whose API
message queue keeps them in order and runs them one at a time. A per-person claim
(`po:starting:<user_id>`) is held while a start is in flight and while a message is handed over,
so two messages never start two workers and a message never overtakes the first one.

The conversation outlives its workers: each PO worker carries `session_key` `po/<user_id>`, so the
wrapper saves the agent's session after every answer and the person's next worker resumes it. While
the agent works, its worker reports activity every few seconds (`activity_every_s`), which keeps the
chat's typing indicator on.

The PO hears how the person's tasks ended: each message handed over starts with "What happened since
we last spoke:" when some task ended since the last one (the API's news), and the person's news marker
moves only once the worker's list holds that very text, so an outcome is told once and never lost to
a redelivery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from functions.product_owner.instructions import PO_INSTRUCTIONS
from shared.api_client import ApiClient, ApiError, ApiUnreachable, AuthError, NotFoundError
from shared.contracts import (
    PO_INBOX,
    PO_RESPONSES,
    WORKER_COMMANDS,
    CreateWorkerCommand,
    CreateWorkerResponse,
    ProductOwnerMessage,
    SendMessageResponse,
    WorkerActivity,
    WorkerConfig,
)
from shared.contracts.api import User, WorkerDetail
from shared.contracts.base import new_id
from shared.contracts.news import News, TaskOutcome
from shared.idempotency import IdempotencyPort
from shared.observability import get_logger
from shared.queues.port import QueuePort
from shared.secrets.port import SecretsPort
from shared.settings import AgentCredentialSettings

LIVE_STATUSES = ("CREATED", "STARTING", "RUNNING")
RETRY_SUFFIX = ":again"
ANSWERED_TTL_S = 48 * 3600
ACTIVITY_EVERY_S = 4
"""Telegram shows "typing…" for 5 s per sendChatAction: a report every 4 s keeps it on without a gap."""
ACTIVITY_STALE_S = 6.0

NO_ACCOUNT = (
    "I can't start your Product Owner yet: your Telegram account is not linked to a user. "
    "Ask an administrator to add you (/adduser), then write again."
)
ADMIN_REFUSED = (
    "Your account is an administrator account, and the Product Owner only works with a user-scope key, "
    "which the service may not create for administrators. Use a non-admin account for the Product Owner "
    "(or ask for the service to be given admin rights)."
)


class Busy(Exception):
    """The person's PO is starting, or another of their messages is being handed over: retry in seconds."""


class ChatPort(Protocol):
    """Where the PO's answers go (the Telegram Bot API in production)."""

    def send_text(self, chat_id: int, text: str) -> None: ...

    def typing(self, chat_id: int) -> None: ...


@dataclass(frozen=True)
class PoConfig:
    agent: str = "claude-code"
    agent_command: str | None = None
    timeout_s: int = 600
    claim_s: int = 300
    api_url: str = "http://127.0.0.1:8787"


def worker_name(user_id: str) -> str:
    return f"po-{user_id}"


def start_claim(user_id: str) -> str:
    return f"po:starting:{user_id}"


def key_reference(user_id: str) -> str:
    return f"secret://po/{user_id}/api_key"


def session_key(user_id: str) -> str:
    """Where the person's PO conversation is saved between workers (session store key)."""
    return f"po/{user_id}"


def message_request_id(inbox_request_id: str) -> str:
    """The worker message for an inbox message: a redelivered update is a duplicate the API drops."""
    return f"po:{inbox_request_id}"[:64]


def create_request_id(inbox_request_id: str) -> str:
    return f"po-create:{inbox_request_id}"[:64]


NEWS_HEADER = "What happened since we last spoke:"
PERSON_HEADER = "Message from the person (Telegram language: "


def build_prompt(text: str, language_code: str | None, news: str = "") -> str:
    """The worker message: the news block (when there is news), then the person's words."""
    message = f"{PERSON_HEADER}{language_code or 'unknown'}):\n\n{text}"
    return f"{news}\n\n{message}" if news else message


def person_text(prompt: str) -> tuple[str, str | None]:
    """The person's words and language back from a prompt made by `build_prompt`."""
    _, found, rest = prompt.partition(PERSON_HEADER)
    if not found:
        return prompt, None
    language, _, text = rest.partition("):\n\n")
    return text, None if language == "unknown" else language


def news_block(news: News) -> str:
    """How the person's tasks ended, one line each, for the PO to answer "how is my blog?" from facts."""
    if not news.items:
        return ""
    lines = [NEWS_HEADER, *(f"- {_outcome_line(item)}" for item in news.items)]
    if news.more:
        lines.append("- (more tasks ended: `orchestrator task list --json`)")
    return "\n".join(lines)


def _outcome_line(item: TaskOutcome) -> str:
    where = f" on {item.project_name}" if item.project_name else ""
    line = f"{item.type} task {item.task_id}{where}: {item.status}"
    if item.failure_reason:
        line += f" (reason: {item.failure_reason})"
    if item.deployed_url:
        line += f", serving at {item.deployed_url}"
    if item.merge_commit:
        line += f", merged into main as {item.merge_commit[:12]}"
    if item.error:
        line += f"; error: {item.error}"
    if item.cost_usd:
        line += f"; cost ${item.cost_usd:.2f}"
    return line


class ProductOwner:
    def __init__(
        self,
        api: ApiClient,
        queue: QueuePort,
        secrets: SecretsPort,
        claims: IdempotencyPort,
        chat: ChatPort,
        config: PoConfig | None = None,
        key_works: Callable[[str], bool] | None = None,
    ) -> None:
        self.api = api
        self.queue = queue
        self.secrets = secrets
        self.claims = claims
        self.chat = chat
        self.config = config or PoConfig()
        self.key_works = key_works or self._key_works
        self.logger = get_logger()
        self._chats: dict[str, int] = {}
        """worker id → chat id, for activity reports (several a minute per conversation)."""

    # -- po:inbox ----------------------------------------------------------------------------

    def on_inbox(self, message: ProductOwnerMessage) -> None:
        user = self._user(message.telegram_user_id)
        if user is None:
            self.chat.send_text(message.chat_id, NO_ACCOUNT)
            return
        lock = start_claim(user.id)
        if not self.claims.claim(lock, self.config.claim_s):
            # a start is in flight: once its worker is recorded (a queue hop, not the whole start of a
            # Fargate task) this message can queue behind the first one in the API's per-worker list
            starting = self.live_worker(user.id)
            if starting is None:
                raise Busy(f"the Product Owner of {user.id} is being started")
            self._queue_behind_first(user.id, starting, message)
            return
        handed_over = False
        try:
            worker = self.live_worker(user.id)
            if worker is None:
                handed_over = self._start(user, message)
            else:
                self._hand_over(
                    user.id,
                    worker.id,
                    message_request_id(message.request_id),
                    message.text,
                    message.language_code,
                    message.correlation_id,
                )
                self._typing(message.chat_id)
        finally:
            if not handed_over:
                self.claims.release(lock)

    def _user(self, telegram_id: int) -> User | None:
        return next((u for u in self.api.list_users() if u.telegram_id == telegram_id), None)

    def live_worker(self, user_id: str) -> WorkerDetail | None:
        """The person's PO worker that has not ended (PO workers are the ones with no task)."""
        name = worker_name(user_id)
        for worker in self.api.list_workers(status=",".join(LIVE_STATUSES), name=name):
            if worker.task_id is not None:
                continue
            try:
                detail = self.api.get_worker(worker.id)
            except NotFoundError:
                continue
            if detail.config.get("name") == name and detail.status in LIVE_STATUSES:
                return detail
        return None

    def _start(self, user: User, message: ProductOwnerMessage) -> bool:
        """Publish the create; True when the claim now waits for the create's response."""
        try:
            reference = self._ensure_key(user)
        except AuthError:
            self.logger.warning("no user-scope key for the PO", extra={"user_id": user.id})
            self.chat.send_text(message.chat_id, ADMIN_REFUSED)
            return False
        options: dict[str, Any] = {}
        if self.config.agent == "command" and self.config.agent_command:
            options["agent_options"] = {"command": self.config.agent_command}
        config = WorkerConfig(
            name=worker_name(user.id),
            agent=self.config.agent,
            capabilities=["orchestrator-cli"],
            env_vars={
                **AgentCredentialSettings().agent_secret_refs,
                "ORCH_API_URL": self.config.api_url,
                "ORCH_API_KEY": reference,
            },
            allowed_commands=["orchestrator"],
            instructions=PO_INSTRUCTIONS,
            reply_queue=PO_RESPONSES,
            activity_every_s=ACTIVITY_EVERY_S,
            **options,
        )
        context = {
            "role": "product_owner",
            "user_id": user.id,
            "telegram_user_id": str(message.telegram_user_id),
            "chat_id": str(message.chat_id),
            "first_request_id": message.request_id,
            "first_text": message.text,
            "language_code": message.language_code or "",
            "step": "product_owner",
            "session_key": session_key(user.id),
        }
        self.queue.publish(
            WORKER_COMMANDS,
            CreateWorkerCommand(
                request_id=create_request_id(message.request_id),
                config=config,
                context=context,
                correlation_id=message.correlation_id,
            ),
        )
        self.logger.info("PO worker requested", extra={"user_id": user.id})
        self._typing(message.chat_id)
        return True

    def _ensure_key(self, user: User) -> str:
        """A user-scope key for the person under secret://po/<user_id>/api_key: created on the first start,
        and again when the stored one no longer works (an admin revoked it), so a revoked key never
        leaves the person with a PO whose every command fails."""
        reference = key_reference(user.id)
        if self.secrets.exists(reference):
            if self.key_works(self.secrets.get(reference)):
                return reference
            self.logger.warning("the PO key was revoked; issuing a new one", extra={"user_id": user.id})
        created = self.api.create_api_key(user.id, "product-owner", ["user"])
        self.secrets.put(reference, created.key)
        return reference

    def _key_works(self, key: str) -> bool:
        """Whether the API still accepts `key` (a 401/403 on /me says it does not)."""
        with ApiClient(self.api.base_url, key, timeout=10.0) as client:
            try:
                client.me()
            except AuthError:
                return False
        return True

    def _queue_behind_first(self, user_id: str, worker: WorkerDetail, message: ProductOwnerMessage) -> None:
        """The worker exists but may not have its first message yet: put that first (idempotent by
        request id, so the create response's own send is then a duplicate), then this one."""
        context = {k: str(v) for k, v in (worker.config.get("context") or {}).items()}
        first = context.get("first_request_id")
        if first and first != message.request_id:
            self._hand_over(
                user_id,
                worker.id,
                message_request_id(first),
                context.get("first_text", ""),
                context.get("language_code") or None,
                message.correlation_id,
            )
        self._hand_over(
            user_id,
            worker.id,
            message_request_id(message.request_id),
            message.text,
            message.language_code,
            message.correlation_id,
        )
        self._typing(message.chat_id)

    def _hand_over(
        self,
        user_id: str,
        worker_id: str,
        request_id: str,
        text: str,
        language_code: str | None,
        correlation_id: str,
    ) -> None:
        """The person's message, after the news of their tasks, straight into the API's per-worker message
        list (idempotent by request id): the order of these calls is the order the worker reads them in,
        which a queue hop would not promise. The news counts as told only when the list kept this very
        text: a duplicate request id keeps the first text, which carried the news of its own moment."""
        news = self._news(user_id)
        prompt = build_prompt(text, language_code, news_block(news) if news else "")
        kept = self.api.send_worker_message(
            worker_id, request_id, prompt, timeout_s=self.config.timeout_s, correlation_id=correlation_id
        )
        if news is not None and news.marker is not None and kept.body == prompt:
            self._news_told(user_id, news)

    def _news(self, user_id: str) -> News | None:
        """The person's news, or None when the API cannot say: the message goes without it (the next one
        carries it), never held back for it."""
        try:
            return self.api.user_news(user_id)
        except (ApiError, ApiUnreachable) as exc:
            self.logger.warning("news not read", extra={"user_id": user_id, "error": type(exc).__name__})
            return None

    def _news_told(self, user_id: str, news: News) -> None:
        """Move the marker past what was handed over. If this fails the next message repeats the same
        news, which is better than a redelivery handing the person's message over twice."""
        assert news.marker is not None
        try:
            self.api.mark_news_seen(user_id, news.marker)
        except (ApiError, ApiUnreachable) as exc:
            self.logger.warning("news not marked", extra={"user_id": user_id, "error": type(exc).__name__})

    def _typing(self, chat_id: int) -> None:
        try:
            self.chat.typing(chat_id)
        except Exception as exc:  # cosmetic: never worth a redelivery
            self.logger.warning("typing indicator not shown", extra={"error": type(exc).__name__})

    # -- po:responses ------------------------------------------------------------------------

    def on_response(self, response: Any) -> None:
        if isinstance(response, WorkerActivity):
            self._working(response)
        elif isinstance(response, CreateWorkerResponse):
            self._created(response)
        elif isinstance(response, SendMessageResponse):
            self._answered(response)
        # delete / send_file responses need no action

    def _working(self, response: WorkerActivity) -> None:
        """The agent is still at it: keep "typing…" on. Never worth a redelivery; a stale report (a slow
        queue, a redelivery) is dropped, as it may describe work that has since been answered."""
        if (datetime.now(UTC) - response.timestamp).total_seconds() > ACTIVITY_STALE_S:
            return
        worker_id = response.worker_id or ""
        chat_id = self._chats.get(worker_id)
        if chat_id is None:
            try:
                found = self._context(worker_id)
            except Exception as exc:
                self.logger.info("activity of an unknown worker", extra={"error": type(exc).__name__})
                return
            if found is None:
                return
            if len(self._chats) > 10_000:
                self._chats.clear()
            chat_id = self._chats[worker_id] = int(found[1]["chat_id"])
        self._typing(chat_id)

    def _context(self, worker_id: str | None) -> tuple[WorkerDetail, dict[str, str]] | None:
        if not worker_id:
            return None
        detail = self.api.get_worker(worker_id)
        context = {k: str(v) for k, v in (detail.config.get("context") or {}).items()}
        if context.get("role") != "product_owner" or not context.get("chat_id"):
            self.logger.warning("response for a worker that is not a PO", extra={"worker_id": worker_id})
            return None
        return detail, context

    def _created(self, response: CreateWorkerResponse) -> None:
        found = self._context(response.worker_id)
        if found is None:
            return
        detail, context = found
        chat_id = int(context["chat_id"])
        lock = start_claim(context["user_id"])
        if response.success:
            self._hand_over(
                context["user_id"],
                detail.id,
                message_request_id(context["first_request_id"]),
                context["first_text"],
                context.get("language_code") or None,
                response.correlation_id,
            )
            self._typing(chat_id)
        else:
            self._say_once(
                f"create:{response.request_id}",
                chat_id,
                f"I could not start your Product Owner ({response.error or 'unknown reason'}). "
                "Please write again in a moment.",
            )
        self.claims.release(lock)

    def _answered(self, response: SendMessageResponse) -> None:
        found = self._context(response.worker_id)
        if found is None:
            return
        detail, context = found
        chat_id = int(context["chat_id"])
        if not response.success and self._start_again_with(detail.id, response.request_id, context):
            return
        if response.success:
            text = (response.response or "").strip() or "(The Product Owner finished without a word.)"
        else:
            text = (
                f"Sorry, the Product Owner stopped: {response.error or 'unknown reason'}. "
                "Your next message starts a new one."
            )
        self._say_once(f"answer:{response.request_id}", chat_id, text)

    def _start_again_with(self, worker_id: str, request_id: str, context: dict[str, str]) -> bool:
        """A message the worker never began (it idled out or died just before) is not lost: it goes back
        to po:inbox under a new request id and starts a new PO worker. Once only: a message that failed
        twice gets the apology. (The news it carried counts as told: the facts stay in `task list`.)"""
        if request_id.endswith(RETRY_SUFFIX):
            return False
        owed = next((m for m in self.api.list_worker_messages(worker_id) if m.request_id == request_id), None)
        if owed is None or owed.started_at is not None:
            return False  # the agent had it: its failure is real, say so
        text, language = person_text(owed.body)
        inbox_id = request_id.removeprefix("po:")
        self.queue.publish(
            PO_INBOX,
            ProductOwnerMessage(
                request_id=f"{inbox_id}{RETRY_SUFFIX}"[:64],
                correlation_id=owed.correlation_id or new_id(),
                telegram_user_id=int(context["telegram_user_id"]),
                chat_id=int(context["chat_id"]),
                message_id=0,
                text=text,
                user_id=context.get("user_id"),
                language_code=language,
            ),
        )
        self.logger.info("message re-queued for a new PO worker", extra={"request_id": request_id})
        return True

    def _say_once(self, key: str, chat_id: int, text: str) -> None:
        """A redelivered response is not a second answer in the chat."""
        claim = f"po:said:{key}"
        if not self.claims.claim(claim, ANSWERED_TTL_S):
            self.logger.info("answer already sent", extra={"key": key})
            return
        try:
            self.chat.send_text(chat_id, text)
        except BaseException:
            self.claims.release(claim)
            raise
