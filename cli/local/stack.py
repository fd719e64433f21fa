"""The embedded stack: API + consumers + scheduler ticker in one process, data in ORCH_HOME.

Everything here calls the same Lambda handlers that run in AWS; only the adapters differ
(SQLite database, SQLite queue, secrets file).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from shared.topology import CONSUMERS, RESETTERS, SCHEDULER_HANDLER, SCHEDULES, LazyHandler, import_handler

if TYPE_CHECKING:
    from functions.migrations.child import MigrationChild

ADMIN_KEY_REF = "secret://local/admin_api_key"
SERVICE_KEY_REF = "secret://local/service_api_key"
SERVICE_KEY_NAME = "embedded-stack"
STATE_FILE = "stack.json"
DATABASE_FILE = "orchestrator.db"
"""The data dir's SQLite database, as `HomeSettings.effective_database_url` names it (a test keeps the two in
agreement): the start looks for it without loading the settings."""
STOP_GRACE_S = 0.5
"""How long `stop` lets running invocations (consumers, scheduled jobs) finish, all together; an idle
stack stops at once. What is cut short comes back after its visibility timeout (every consumer is
redelivery-safe); a long one (a playbook, a graph step) would not finish within seconds anyway."""
SERVER_POLL_S = 0.05
"""How often the HTTP server's loop looks for a shutdown request (socketserver's default is 0.5 s)."""


@dataclass
class StackState:
    pid: int
    url: str
    port: int
    database: str
    started_at: float
    consumers: list[str] = field(default_factory=list)
    schedules: list[str] = field(default_factory=list)
    agents: list[str] | None = None
    """The coding agents this stack can run (its PATH and ORCH_AGENT_COMMAND); None: not recorded."""
    default_agent: str | None = None
    """The agent of a task whose project names none (ORCH_DEFAULT_AGENT when the stack started)."""

    @classmethod
    def read(cls, home: Path) -> StackState | None:
        try:
            return cls(**json.loads((home / STATE_FILE).read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def write(self, home: Path) -> None:
        path = home / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        os.replace(tmp, path)


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs; an exited process its parent has not reaped yet (a zombie) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # no procfs (macOS): signal 0 is all there is
        return True
    return state != "Z"


LOCALHOST_SERVER = "localhost"
AGENT_EXECUTABLES = {"claude-code": "claude_bin", "factory-droid": "droid_bin", "codex": "codex_bin"}
"""Each agent CLI's `AgentEnvironment` field: the executable its worker looks up on the stack's PATH."""


def runnable_agents(env: Any = None) -> list[str]:
    """The agents a worker started from this environment can run: those whose CLI is on PATH, `command`
    when ORCH_AGENT_COMMAND is set, and `none` (no developer) always.

    Without `env`, the variables are read as `AgentEnvironment` reads them (`ORCH_` + the field, any
    case): importing it loads every agent adapter, which the stack's start has no use for."""
    import shutil

    if env is None:
        environ = {name.lower(): value for name, value in os.environ.items()}
        defaults = {"claude_bin": "claude", "droid_bin": "droid", "codex_bin": "codex"}
        binaries = {attr: environ.get(f"orch_{attr}", defaults[attr]) for attr in AGENT_EXECUTABLES.values()}
        command = environ.get("orch_agent_command")
    else:
        binaries = {attr: getattr(env, attr) for attr in AGENT_EXECUTABLES.values()}
        command = env.agent_command
    found = [name for name, attr in AGENT_EXECUTABLES.items() if shutil.which(binaries[attr])]
    if (command or "").strip():
        found.append("command")
    return sorted([*found, "none"])


MALLOC_ARENAS = 2
"""glibc malloc arenas the stack's process (and the workers it forks) may use, unless `MALLOC_ARENA_MAX`
says otherwise. glibc's default, 8 per core, gives each of the stack's many threads (HTTP connections,
handler slots, consumers) an arena of its own, whose freed pages stay resident: ~5 MiB more RSS after an
API workload on PostgreSQL, for no speed the GIL would let them use (issue 24)."""
M_ARENA_MAX = -8
"""mallopt(3)'s parameter number for the arena limit."""


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap the process's malloc arenas (those made from now on) at `arenas`; False where there is no glibc
    or the person set `MALLOC_ARENA_MAX` (glibc has applied it already)."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas))  # the C library already loaded
    except (OSError, AttributeError):  # musl and others: no mallopt, or no such parameter
        return False


def _stored_or_new_key(secrets: Any, ref: str) -> str:
    """The API key stored under `ref`, or a new one stored there first."""
    from functions.api.auth import generate_key
    from shared.secrets import SecretNotFound

    try:
        key: str = secrets.get(ref)
    except SecretNotFound:
        key = generate_key()
        secrets.put(ref, key)
    return key


def _local_user(name: str) -> str:
    """The server record wants an ssh-style user name; the local connection never uses it."""
    import re

    return name if re.fullmatch(r"[a-z_][a-z0-9_-]*", name or "") else "local"


DATABASE_LOGINS = ("orch_database_iam_user", "orch_database_secret_ref")
"""Settings with which the API logs in to PostgreSQL whatever `database_url` says (`deps.database_login`)."""


def _database_login_set() -> bool:
    """Whether the environment names a PostgreSQL login (`DATABASE_LOGINS`, in any case, as pydantic-settings
    reads them): the database is then not the data dir's file."""
    return any(name.lower() in DATABASE_LOGINS and value for name, value in os.environ.items())


class EmbeddedStack:
    def __init__(
        self,
        home: Path,
        port: int = 8787,
        database_url: str | None = None,
        host: str = "127.0.0.1",
        tick_s: float = 1.0,
        consumers: Sequence[str] | None = None,
        telegram: bool = False,
    ) -> None:
        self.home = home.expanduser()
        self.port = port
        self.host = host
        self.database_url = database_url
        self.tick_s = tick_s
        known = [c.function for c in CONSUMERS]
        unknown = sorted(set(consumers or ()) - set(known))
        if unknown:
            raise ValueError(f"unknown consumer(s) {', '.join(unknown)}; known: {', '.join(known)}")
        self.telegram = telegram
        self.consumers = [
            c
            for c in CONSUMERS
            if (c.function in consumers if consumers is not None else not c.optional or telegram)
        ]
        self._telegram: Any = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pollers: list[Any] = []
        self.server: Any = None
        self.admin_key: str | None = None
        self.notices: list[str] = []
        """One line each: what `start` repaired, for `local up` to tell the person."""

    @property
    def logger(self) -> Any:
        """The process's logger, loaded on first use: `local down` and `local status` import this module only
        to read the state file, and the logger brings pydantic-settings and Powertools with it."""
        from shared.observability import get_logger

        return get_logger()

    # -- start ---------------------------------------------------------------------------

    def start(self, ready: bool = True) -> str:
        """Serve the API, start the consumers and the scheduler; the URL. With `ready=False`, /health
        answers 503 (`ready: false`) and no scheduled job runs until `mark_ready()`: `local up` first
        writes the CLI's config and prints its first line."""
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.home / "logs").mkdir(exist_ok=True)
        migrating = self._migrate_new_database()
        try:
            return self._start(migrating, ready)
        finally:
            if migrating is not None:
                migrating.abandon()  # a no-op once awaited; stops it when the start failed before

    def _migrate_new_database(self) -> MigrationChild | None:
        """A `MigrationChild` already at work when the database is the data dir's SQLite file and it does not
        exist yet (a fresh data dir): known without loading SQLAlchemy, and the child's ~0.9 s then overlap
        this process loading the API's modules on the other core. None otherwise (`_prepare_database`
        looks at the database first, as always)."""
        if self.database_url is not None or (self.home / DATABASE_FILE).exists() or _database_login_set():
            return None
        from functions.migrations.child import MigrationChild

        return MigrationChild(f"sqlite:///{self.home / DATABASE_FILE}")

    def _start(self, migrating: MigrationChild | None, ready: bool) -> str:
        from functions.api.deps import build_deps, set_deps
        from functions.api.services import readiness
        from functions.api.settings import ApiSettings
        from functions.engineering.settings import EngineeringSettings
        from shared.secrets import build_secrets
        from shared.settings import SecretsSettings

        limit_malloc_arenas()  # before the threads below make arenas
        secrets = build_secrets(SecretsSettings(home=self.home))
        self.admin_key = _stored_or_new_key(secrets, ADMIN_KEY_REF)
        settings = ApiSettings(
            home=self.home, database_url=self.database_url, bootstrap_admin_key=SecretStr(self.admin_key)
        )
        deps = build_deps(settings)
        revision = self._prepare_database(deps.db, migrating)
        self._ensure_admin_key(deps.db, secrets)
        self._ensure_service_key(deps.db, secrets)
        set_deps(deps)
        self.logger.info("database ready", extra={"revision": revision, "database": self._shown_db(settings)})

        from cli.local.http import ApiHttpServer
        from functions.api.handler import lambda_handler

        readiness.mark_starting()
        self.server = ApiHttpServer((self.host, self.port), lambda_handler)
        self.port = self.server.server_address[1]
        self._spawn("api-http", lambda: self.server.serve_forever(poll_interval=SERVER_POLL_S))
        url: str = self.server.url
        from shared.apigw import serve_in_process

        # the consumers, jobs and graphs below call this API in their own thread, not over the socket
        serve_in_process(url, self.server.invoke)

        os.environ["ORCH_HOME"] = str(self.home)
        os.environ["ORCH_API_URL"] = url
        os.environ["ORCH_SERVICE_API_KEY_REF"] = SERVICE_KEY_REF
        self._ensure_localhost_server(url, deps.db)

        self._reset_functions()
        self._start_consumers()
        if self.telegram:
            self._start_telegram()
        StackState(
            pid=os.getpid(),
            url=url,
            port=self.port,
            database=self._shown_db(settings),
            started_at=time.time(),
            consumers=[c.function for c in self.consumers],
            schedules=[s.job for s in SCHEDULES],
            agents=runnable_agents(),
            default_agent=EngineeringSettings(home=self.home).default_agent,
        ).write(self.home)
        self.logger.info("embedded stack up", extra={"url": url, "home": str(self.home)})
        if ready:
            self.mark_ready()
        return url

    def _prepare_database(self, db: Any, migrating: MigrationChild | None = None) -> str:
        """Migrate and seed the first admin; the revision the database is at. The migration runs in a
        process of its own (`migrate_in_child`; for a new data dir's database already begun: `migrating`):
        this one never loads Alembic. A database this code serves as it is (at the head, or ahead of it:
        left alone either way) only gets the admin; one ahead is seeded too: the API serves it, and the
        stack needs its keys."""
        from functions.api.db import schema_serves
        from functions.migrations.bootstrap import ensure_first_admin, migrate_in_child

        assert self.admin_key is not None
        if migrating is not None and not self._is_data_dir_file(db.engine.url):
            migrating.abandon()  # the settings chose another database after all: it is looked at below
            migrating = None
        if migrating is not None:
            revision: str | None = migrating.result().revision
        else:
            revision = db.schema_revision()
            if not schema_serves(revision):
                revision = migrate_in_child(db.engine.url.render_as_string(hide_password=False)).revision
        with db.session() as session:
            ensure_first_admin(session, self.admin_key)
        return str(revision)

    def _is_data_dir_file(self, url: Any) -> bool:
        return bool(url.get_backend_name() == "sqlite" and url.database == str(self.home / DATABASE_FILE))

    def mark_ready(self) -> None:
        """From now on /health answers 200 (with a reachable database), and the scheduled jobs run: not
        before, so they neither slow the start nor print (their metrics) before `local up`'s first line."""
        from functions.api.services import readiness

        readiness.mark_ready()
        if not any(thread.name == "scheduler" for thread in self._threads):
            self._spawn("scheduler", self._tick_forever)

    @staticmethod
    def _shown_db(settings: Any) -> str:
        from sqlalchemy.engine import make_url

        return make_url(settings.effective_database_url).render_as_string(hide_password=True)

    def _ensure_localhost_server(self, url: str, db: Any) -> None:
        """The built-in deploy target: this machine, reached without ssh, shared by every user.

        Registered through the API (its validation and ownership rules) when the database has no such
        server; a data dir that has it (every start but the first) only looks, without an HTTP client."""
        import getpass

        from sqlalchemy import select

        from functions.api.models import Server

        with db.session() as session:
            if session.execute(select(Server.id).where(Server.handle == LOCALHOST_SERVER)).first():
                return

        import httpx

        from shared.api_client import ApiClient, NotFoundError

        # plain HTTP to this process: a TLS-verifying client would load the CA bundle (~0.1 s) for nothing
        with ApiClient(url, self.admin_key, transport=httpx.HTTPTransport(verify=False)) as admin:
            try:
                admin.get_server(LOCALHOST_SERVER)
            except NotFoundError:
                admin.add_server(
                    LOCALHOST_SERVER,
                    "127.0.0.1",
                    ssh_user=_local_user(getpass.getuser()),
                    labels={"builtin": "true", "connection": "local"},
                )

    def _ensure_admin_key(self, db: Any, secrets: Any) -> None:
        """The stack's own admin key must open the API: an admin may revoke it (or demote or delete its
        user) like any key, and the stack then could not even register its built-in server. A key
        that no longer authenticates an admin is replaced by a new one for an admin (the key's user
        if still an admin, else the oldest admin), stored where the old one was. A database with no
        admin at all is left to the API's bootstrap, which seeds one holding the stored key."""
        from sqlalchemy import select

        from functions.api.auth import hash_key, issue_key
        from functions.api.models import ApiKey, User

        assert self.admin_key is not None
        with db.session() as session:
            admins = select(User).where(User.is_admin.is_(True)).order_by(User.created_at, User.id)
            if session.execute(admins.limit(1)).first() is None:
                return
            row = session.execute(
                select(ApiKey, User)
                .join(User, User.id == ApiKey.user_id)
                .where(ApiKey.key_hash == hash_key(self.admin_key))
            ).first()
            if row is not None and row[0].revoked_at is None and row[1].is_admin:
                return
            if row is None:
                why = "is unknown to this database"
            elif row[0].revoked_at is not None:
                why = "was revoked"
            else:
                why = "belongs to a user who is no longer an admin"
            owner = (
                row[1] if row is not None and row[1].is_admin else session.execute(admins).scalars().first()
            )
            _, key = issue_key(session, owner, "bootstrap", ["admin", "user"])
            # stored before the commit; whichever fails, the next start finds a key to replace
            secrets.put(ADMIN_KEY_REF, key)
        self.admin_key = key
        notice = f"the stack's admin key {why}: issued a new one for admin {owner.name!r} (stored as {ADMIN_KEY_REF})"
        self.notices.append(notice)
        self.logger.warning(notice)

    @staticmethod
    def _ensure_service_key(db: Any, secrets: Any) -> None:
        """The key the stack's functions use (ORCH_SERVICE_API_KEY_REF): a live service key, else a new one.
        Stored before the commit; whichever fails, the next start registers or replaces it."""
        from functions.api.auth import generate_key
        from functions.migrations.bootstrap import ServiceKey, ensure_service_key

        key = _stored_or_new_key(secrets, SERVICE_KEY_REF)
        with db.session() as session:
            if (
                ensure_service_key(session, ServiceKey(key, SERVICE_KEY_NAME, revoke_previous=False))
                == "revoked"
            ):
                key = generate_key()
                secrets.put(SERVICE_KEY_REF, key)
                ensure_service_key(session, ServiceKey(key, SERVICE_KEY_NAME, revoke_previous=False))

    @staticmethod
    def _reset_functions() -> None:
        """Reset the per-process state of the consumer functions this process has loaded; one never
        imported has none yet (and importing it here would load aiogram or langgraph for nothing)."""
        for path in RESETTERS:
            if path.partition(":")[0] in sys.modules:
                try:
                    import_handler(path)()
                except Exception:  # e.g. a module whose first import (at a first message) failed
                    from shared.observability import get_logger

                    get_logger().exception("could not reset a consumer function", extra={"reset": path})

    def _start_consumers(self) -> None:
        from shared.queues import build_queue
        from shared.queues.local_runner import QueuePoller
        from shared.settings import QueueSettings

        queue = build_queue(QueueSettings(home=self.home))
        handlers = [LazyHandler(spec.handler) for spec in self.consumers]
        missing = sorted({name for handler in handlers for name in handler.missing()})
        if missing:  # loaded at their first batch, but a broken install is refused now, not then
            raise RuntimeError(f"cannot start the consumers: missing module(s) {', '.join(missing)}")
        for spec, handler in zip(self.consumers, handlers, strict=True):
            for queue_name in spec.queues:
                for n in range(max(1, spec.max_concurrency)):
                    poller = QueuePoller(queue, queue_name, handler, batch_size=spec.batch_size)
                    self._pollers.append(poller)
                    self._spawn(
                        f"{spec.function}:{queue_name}:{n}", lambda p=poller: p.run_forever(wait_seconds=1.0)
                    )

    def _tick_forever(self) -> None:
        handler = LazyHandler(SCHEDULER_HANDLER)  # imported one at a time with the consumers' functions
        start = time.monotonic()
        next_run = {s.job: 0.0 if s.run_at_start else start + s.every_s for s in SCHEDULES}
        while not self._stop.is_set():
            now = time.monotonic()
            for spec in SCHEDULES:
                if self._stop.is_set():  # stopping: the jobs not begun yet wait for the next start
                    break
                if now >= next_run[spec.job]:
                    next_run[spec.job] = now + spec.every_s
                    try:
                        handler({"job": spec.job}, None)
                    except Exception:
                        self.logger.exception("scheduled job failed", extra={"job": spec.job})
            self._stop.wait(self.tick_s)

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- stop ----------------------------------------------------------------------------

    def wait(self) -> None:
        self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()

    def _start_telegram(self) -> None:
        """Long polling instead of a webhook: no public URL needed; updates go through the same queue,
        dedupe and bot consumer as in AWS."""
        from cli.local.telegram_polling import TelegramPoller
        from shared.telegram.settings import TelegramSettings

        self._telegram = TelegramPoller(TelegramSettings(home=self.home))
        self._telegram.start()

    def stop(self, exiting: bool = False) -> None:
        """Stop taking work; in-flight messages reappear after their visibility timeout.

        `exiting`: the process ends right after (`local up`), so the consumer functions' per-process state
        is not reset: a reset prepares a next start in the same process, and one that needs a module a
        job still imports waits for that import (seen: over a second of `local down` after a fresh start)."""
        self._stop.set()
        if self._telegram is not None:
            self._telegram.stop()
        for poller in self._pollers:
            poller.stop()
        # the API serves until the consumers and jobs are done: their calls to it must not fail
        deadline = time.monotonic() + STOP_GRACE_S
        for thread in self._threads:
            if thread.name != "api-http":
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.server is not None:
            from shared.apigw import stop_serving_in_process

            stop_serving_in_process(self.server.url)
            self.server.shutdown()
            self.server.server_close()
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        state = StackState.read(self.home)
        if state and state.pid == os.getpid():
            (self.home / STATE_FILE).unlink(missing_ok=True)
        from functions.api.db import dispose_all
        from functions.api.services import readiness

        if not exiting:
            self._reset_functions()
        dispose_all()
        readiness.mark_ready()  # the process's default again (an API in AWS is ready once it answers)
        self.logger.info("embedded stack stopped")
