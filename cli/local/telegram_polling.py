"""Long polling for the embedded stack (`orchestrator local up --telegram`): no public URL needed.

A thread runs `getUpdates` with an offset and hands each update to the same intake as the
webhook (claim the update_id, queue it on `telegram:updates`), so the bot consumer cannot tell
the two apart. The offset only moves past an update once it is queued: if queueing fails the
update is fetched again. After a restart Telegram re-sends what was not confirmed and the claims
drop what was already queued. `stop()` interrupts a long poll in flight and returns at once.
"""

from __future__ import annotations

import threading
from typing import Any

from shared.idempotency import IdempotencyPort
from shared.observability import get_logger
from shared.queues.port import QueuePort
from shared.retry import until_stopped
from shared.telegram import ALLOWED_UPDATES
from shared.telegram.client import BotApiClosed, BotApiError, BotApiUnreachable, TelegramClient
from shared.telegram.intake import InvalidUpdate, accept_update
from shared.telegram.settings import TelegramSettings


class TelegramPoller:
    """`start()` a daemon thread that long-polls; `stop()` ends it. Restartable is not a goal: make a new one."""

    def __init__(
        self,
        settings: TelegramSettings | None = None,
        *,
        queue: QueuePort | None = None,
        claims: IdempotencyPort | None = None,
        api: TelegramClient | None = None,
        poll_timeout_s: int = 25,
        max_backoff_s: float = 30.0,
    ) -> None:
        """Ports default to the configured ones; the token is resolved now, so a missing one fails here."""
        self.settings = settings or TelegramSettings()
        if queue is None:
            from shared.queues.factory import build_queue

            queue = build_queue(self.settings, self.settings)
        if claims is None:
            from shared.idempotency import build_idempotency

            claims = build_idempotency(self.settings)
        self.queue, self.claims = queue, claims
        self.poll_timeout_s = poll_timeout_s
        self.max_backoff_s = max_backoff_s
        # no retries inside the client: this loop backs off itself, and stop() must not wait for a retry
        self.api = api or TelegramClient(
            self.settings.resolve_bot_token(),
            self.settings.telegram_api_base,
            timeout=poll_timeout_s + 15,
            attempts=1,
        )
        self.offset: int | None = None
        self.queued = 0
        self.duplicates = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logger = get_logger()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("this poller was already started")
        self._thread = threading.Thread(target=self._run, name="telegram-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.api.interrupt()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                self._logger.warning("telegram poller did not stop in time", extra={"timeout_s": timeout})
        self.api.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- polling ---------------------------------------------------------------------------

    def poll_once(self, timeout_s: int | None = None) -> int:
        """One getUpdates; queues what it got; returns how many updates were queued (not duplicates)."""
        params: dict[str, Any] = {
            "timeout": self.poll_timeout_s if timeout_s is None else timeout_s,
            "allowed_updates": ALLOWED_UPDATES,
        }
        if self.offset is not None:
            params["offset"] = self.offset
        updates = self.api.call("getUpdates", params)
        queued = 0
        for update in updates or []:
            update_id = update.get("update_id") if isinstance(update, dict) else None
            try:
                outcome, _ = accept_update(
                    update, self.queue, self.claims, self.settings.telegram_update_ttl_s
                )
            except InvalidUpdate as exc:  # cannot come from Telegram; skip it rather than loop on it
                self._logger.error("telegram sent an update without an update_id", extra={"reason": str(exc)})
                continue
            if outcome == "queued":
                queued += 1
                self.queued += 1
            else:
                self.duplicates += 1
            if isinstance(update_id, int):
                self.offset = max(self.offset or 0, update_id + 1)
        return queued

    def _run(self) -> None:
        self._logger.info("telegram long polling started", extra={"api": self.settings.telegram_api_base})
        self._publish_menu()
        policy = until_stopped(
            self._stop,
            self._delay_for,
            retry_on=lambda exc: not isinstance(exc, BotApiClosed),
            on_retry=self._report,
        )
        while not self._stop.is_set():
            try:
                policy(self.poll_once)  # the failures (and so the backoff) restart after each success
            except BotApiClosed:
                break
            except Exception:  # noqa: S112 - reported by _report; only a stop ends the retries
                continue
        self._logger.info("telegram long polling stopped", extra={"queued": self.queued})

    def _publish_menu(self) -> None:
        """The "/" command menu (setMyCommands), as `telegram set-webhook` publishes it: once, best effort
        (a bot without its menu still answers every command)."""
        from functions.telegram_bot.texts import BOT_COMMANDS

        try:
            self.api.set_commands(BOT_COMMANDS)
        except Exception as exc:
            self._logger.warning("telegram command menu not published", extra={"reason": str(exc)[:200]})

    def _report(self, exc: BaseException, delay: float) -> None:
        if isinstance(exc, BotApiError):
            self._logger.error(
                "telegram getUpdates refused",
                extra={"error_code": exc.error_code, "description": exc.description, "retry_in_s": delay},
            )
        elif isinstance(exc, BotApiUnreachable):
            self._logger.warning("telegram unreachable", extra={"reason": str(exc), "retry_in_s": delay})
        else:  # the queue or the claim store: keep the offset, try again
            self._logger.error(
                "telegram updates not queued",
                exc_info=exc,
                extra={"error": type(exc).__name__, "retry_in_s": delay},
            )

    def _backoff(self, failures: int) -> float:
        return float(min(self.max_backoff_s, 2**failures))

    def _delay_for(self, exc: BaseException, failures: int) -> float:
        if not isinstance(exc, BotApiError):
            return self._backoff(failures)
        if exc.retry_after:
            return float(exc.retry_after)
        if exc.error_code == 409:
            # A webhook is set for this bot: polling cannot work until it is deleted
            # (`orchestrator telegram delete-webhook`). Never delete someone's webhook silently.
            return self.max_backoff_s
        return self._backoff(failures)
