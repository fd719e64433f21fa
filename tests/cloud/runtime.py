"""The AWS services that run the code: Lambda (one process per warm container), the SQS event source
mappings, the HTTP API, EventBridge rules (schedules and ECS task-state patterns) and ECS RunTask.

Each function runs in its own process (`lambda_host.py`) with its template environment, its code
asset and layers only, a private /tmp (a mount namespace, as each Lambda sandbox has its own), and
the IAM guard holding exactly its role's statements. Everything it calls is recorded; the rehearsal
fails on any denied call.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HARNESS_DIR = Path(__file__).resolve().parent
ADMIN_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "rehearsal-admin", "AWS_SECRET_ACCESS_KEY": "rehearsal-admin"}


@dataclass
class Principal:
    """An IAM role as the rehearsal enforces it: its ARN and its statements (intrinsics resolved)."""

    name: str
    arn: str
    statements: list[dict[str, Any]]

    def write(self, directory: Path) -> Path:
        path = directory / f"policy-{self.name}.json"
        path.write_text(json.dumps({"principal": self.arn, "statements": self.statements}, indent=1))
        return path


@dataclass
class FunctionSpec:
    logical: str
    name: str
    arn: str
    handler: str
    environment: dict[str, str]
    timeout_s: int
    memory_mb: int
    principal: Principal
    code_paths: list[str]
    allowed_modules: list[str]
    layer_names: list[str] = field(default_factory=list)
    snap_start: bool = False
    """SnapStart on published versions: the host runs the snapshot and restore hooks after init (lambda_host)."""


@dataclass
class Invocation:
    result: Any = None
    error: dict[str, str] | None = None
    duration_s: float = 0.0


class FunctionHost:
    """One warm execution environment of a function; invocations are serial, as in Lambda."""

    def __init__(self, spec: FunctionSpec, workdir: Path, outside: Mapping[str, str]) -> None:
        self.spec = spec
        self.workdir = workdir
        self.outside = dict(outside)
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self._answers: Any = None
        self.cold_starts = 0
        self.log_path = workdir / "logs" / f"{spec.name}.log"
        self.record_path = workdir / "iam" / f"{spec.name}.jsonl"

    def _environment(self) -> dict[str, str]:
        spec = self.spec
        env = {
            # what the Lambda runtime sets
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "LAMBDA_TASK_ROOT": spec.code_paths[0],
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "AWS_ACCESS_KEY_ID": f"ASIA{spec.name[:12].upper()}",
            "AWS_SECRET_ACCESS_KEY": "rehearsal",
            "AWS_SESSION_TOKEN": f"role/{spec.principal.name}",
            **self.outside,
            **spec.environment,
            # botocore refuses a custom endpoint (moto) together with dual-stack endpoints; the IPv6 path is
            # the network's (tests/infrastructure/test_network.py), not something moto could show
            **(
                {"AWS_USE_DUALSTACK_ENDPOINT": "false"}
                if "AWS_USE_DUALSTACK_ENDPOINT" in spec.environment
                else {}
            ),
            # the host's own settings, removed before the function's code runs
            "REHEARSAL_HOST": json.dumps(
                {
                    "code_paths": spec.code_paths,
                    "site_packages": [p for p in sys.path if p.endswith("site-packages")],
                    "allowed_modules": spec.allowed_modules,
                    "handler": spec.handler,
                    "function_arn": spec.arn,
                    "snap_start": spec.snap_start,
                    "iam": (HARNESS_DIR / "iam.py").exists(),
                    "harness_dir": str(HARNESS_DIR),
                }
            ),
            "REHEARSAL_IAM_POLICY": str(spec.principal.write(self.workdir / "iam")),
            "REHEARSAL_IAM_RECORD": str(self.record_path),
        }
        return env

    def start(self) -> None:
        tmp = self.workdir / "tmp" / f"{self.spec.name}-{uuid.uuid4().hex[:6]}"
        tmp.mkdir(parents=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        command = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            'mount --bind "$1" /tmp && shift && exec "$@"',
            "sh",
            str(tmp),
            sys.executable,
            "-I",
            "-S",
            str(HARNESS_DIR / "lambda_host.py"),
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=self._environment(),
            cwd=str(tmp),
            start_new_session=True,
        )
        log.close()
        self._answers = self.process.stdout
        ready = self._answers.readline()
        if not ready:
            raise RuntimeError(
                f"{self.spec.name}: the execution environment died at start (log {self.log_path})"
            )
        self.cold_starts += 1

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)
            self.process.wait()
            self.process = None
        if self._answers is not None:
            self._answers.close()
            self._answers = None

    def invoke(self, event: Any) -> Invocation:
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self.stop()
                self.start()
            assert self.process is not None and self.process.stdin is not None
            started = time.time()
            deadline = started + self.spec.timeout_s
            request = {"event": event, "request_id": str(uuid.uuid4()), "deadline": deadline}
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
            answer = self._read_answer(deadline)
            if answer is None:  # timed out or crashed: Lambda discards the sandbox
                self.stop()
                return Invocation(
                    error={
                        "errorType": "Sandbox.Timedout",
                        "errorMessage": f"{self.spec.name} did not answer in {self.spec.timeout_s} s",
                    },
                    duration_s=time.time() - started,
                )
            return Invocation(answer.get("result"), answer.get("error"), time.time() - started)

    def _read_answer(self, deadline: float) -> dict[str, Any] | None:
        box: queue.Queue[bytes] = queue.Queue()
        reader = threading.Thread(target=lambda: box.put(self._answers.readline()), daemon=True)
        reader.start()
        try:
            line = box.get(timeout=max(0.1, deadline - time.time()))
        except queue.Empty:
            return None
        return json.loads(line) if line else None


class Lambda:
    """The functions of the stack by name and ARN; `concurrency` warm environments each at most."""

    def __init__(self, specs: list[FunctionSpec], workdir: Path, outside: Mapping[str, str]) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.by_arn = {spec.arn: spec.name for spec in specs}
        self.by_logical = {spec.logical: spec.name for spec in specs}
        self.workdir = workdir
        self.outside = outside
        self._pools: dict[str, list[FunctionHost]] = {}
        self._lock = threading.Lock()
        self.invocations: list[tuple[str, float, str | None]] = []

    def _host(self, name: str) -> FunctionHost:
        with self._lock:
            pool = self._pools.setdefault(name, [])
            for host in pool:
                if not host.lock.locked():
                    return host
            if len(pool) < 2:  # a second environment when one is busy (event sources allow 2 at least)
                host = FunctionHost(self.specs[name], self.workdir, self.outside)
                pool.append(host)
                return host
            return pool[0]

    def name_of(self, name_or_arn: str) -> str:
        """A function's name from its name, logical id or ARN; a qualifier (`:live`, a SnapStart alias) is dropped."""
        name = self.by_arn.get(name_or_arn, self.by_logical.get(name_or_arn, name_or_arn))
        if name not in self.specs and ":" in name:
            return self.name_of(name.rsplit(":", 1)[0])
        return name

    def invoke(self, name_or_arn: str, event: Any) -> Invocation:
        name = self.name_of(name_or_arn)
        if name not in self.specs:
            raise KeyError(f"no function {name_or_arn!r} in the template")
        result = self._host(name).invoke(event)
        self.invocations.append((name, result.duration_s, (result.error or {}).get("errorType")))
        return result

    def hosts(self) -> list[FunctionHost]:
        return [host for pool in self._pools.values() for host in pool]

    def stop(self) -> None:
        for host in self.hosts():
            host.stop()


# -- SQS event source mappings ------------------------------------------------------------------------


class SqsEventSource(threading.Thread):
    """Lambda's SQS poller: batch size, partial batch responses, failures back after a (compressed)
    visibility timeout, the queue's own redrive policy moving poison to its DLQ."""

    def __init__(
        self,
        lambda_: Lambda,
        function: str,
        mapping: Mapping[str, Any],
        queue_url: str,
        queue_arn: str,
        sqs: Any,
        retry_visibility_s: int = 1,
    ) -> None:
        super().__init__(daemon=True, name=f"esm-{function}-{queue_arn.rsplit(':', 1)[-1]}")
        self.lambda_ = lambda_
        self.function = function
        self.batch_size = int(mapping.get("BatchSize", 10))
        self.report_failures = "ReportBatchItemFailures" in mapping.get("FunctionResponseTypes", [])
        self.max_concurrency = int(mapping.get("ScalingConfig", {}).get("MaximumConcurrency", 1000))
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.sqs = sqs
        self.retry_visibility_s = retry_visibility_s
        self.stopping = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=self.batch_size,
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            except Exception as exc:  # moto stopping at teardown
                if not self.stopping.is_set():
                    self.errors.append(f"receive: {exc}")
                    time.sleep(0.5)
                continue
            if messages:
                self._deliver(messages)

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        event = {"Records": [self._record(m) for m in messages]}
        outcome = self.lambda_.invoke(self.function, event)
        failed: set[str] = set()
        if outcome.error is not None:
            failed = {m["MessageId"] for m in messages}
        elif self.report_failures and isinstance(outcome.result, dict):
            failed = {f["itemIdentifier"] for f in outcome.result.get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] in failed:
                # AWS leaves it invisible for the queue's visibility timeout; the rehearsal compresses that
                with contextlib.suppress(Exception):
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queue_url,
                        ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=self.retry_visibility_s,
                    )
            else:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        attributes = message.get("Attributes", {})
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {
                "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
                "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
                "SenderId": attributes.get("SenderId", "AIDAREHEARSAL"),
                "ApproximateFirstReceiveTimestamp": attributes.get("ApproximateFirstReceiveTimestamp", "0"),
            },
            "messageAttributes": {
                name: {
                    "stringValue": value.get("StringValue"),
                    "binaryValue": value.get("BinaryValue"),
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": value.get("DataType", "String"),
                }
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": "us-east-1",
        }


# -- EventBridge ----------------------------------------------------------------------------------------


def pattern_matches(pattern: Any, event: Any) -> bool:
    """EventBridge pattern matching for what the stack uses: exact values, `prefix`, nested objects."""
    if isinstance(pattern, dict):
        if not isinstance(event, dict):
            return False
        return all(key in event and pattern_matches(sub, event[key]) for key, sub in pattern.items())
    if isinstance(pattern, list):
        values = event if isinstance(event, list) else [event]
        for candidate in pattern:
            for value in values:
                if isinstance(candidate, dict):
                    if (
                        "prefix" in candidate
                        and isinstance(value, str)
                        and value.startswith(candidate["prefix"])
                    ):
                        return True
                    if candidate.get("exists"):
                        return True
                elif candidate == value:
                    return True
        return False
    return bool(pattern == event)


@dataclass
class Rule:
    name: str
    pattern: dict[str, Any] | None
    schedule: str | None
    targets: list[dict[str, Any]]


class EventBus:
    def __init__(self, lambda_: Lambda, rules: list[Rule]) -> None:
        self.lambda_ = lambda_
        self.rules = rules
        self.deliveries: list[tuple[str, str, Invocation]] = []

    def put(self, event: dict[str, Any]) -> list[Invocation]:
        results = []
        for rule in self.rules:
            if rule.pattern is not None and pattern_matches(rule.pattern, event):
                for target in rule.targets:
                    results.append(self._deliver(rule, target, event))
        return results

    def _deliver(self, rule: Rule, target: dict[str, Any], event: Any) -> Invocation:
        payload = json.loads(target["Input"]) if "Input" in target else event
        attempts = 1 + int(target.get("RetryPolicy", {}).get("MaximumRetryAttempts", 2))
        outcome = Invocation()
        for _ in range(max(1, min(attempts, 3))):  # EventBridge retries async invoke errors; bounded here
            outcome = self.lambda_.invoke(target["Arn"], payload)
            if outcome.error is None:
                break
        self.deliveries.append((rule.name, target["Arn"], outcome))
        return outcome

    def schedule(self, job_rule_name: str) -> list[Invocation]:
        """One tick of a scheduled rule, as EventBridge fires it."""
        rule = next(r for r in self.rules if r.name == job_rule_name)
        return [self._deliver(rule, target, self._scheduled_event(rule)) for target in rule.targets]

    @staticmethod
    def _scheduled_event(rule: Rule) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-east-1",
            "resources": [rule.name],
            "detail": {},
        }


# -- HTTP API -------------------------------------------------------------------------------------------


class HttpApi:
    """API Gateway HTTP API with payload format 2.0: routes by route key, `$default` last."""

    def __init__(self, lambda_: Lambda) -> None:
        self.lambda_ = lambda_
        self.routes: dict[str, str] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                from shared.apigw import http_api_event

                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                path, _, query = self.path.partition("?")
                route = f"{self.command} {path}"
                target = api.routes.get(route) or api.routes.get("$default")
                if target is None:
                    self._send(404, b'{"message":"Not Found"}', {})
                    return
                event = http_api_event(self.command, path, query, dict(self.headers.items()), body)
                event["routeKey"] = route if route in api.routes else "$default"
                event["requestContext"]["routeKey"] = event["routeKey"]
                event["requestContext"]["accountId"] = "123456789012"
                outcome = api.lambda_.invoke(target, event)
                if outcome.error is not None:
                    self._send(500, b'{"message":"Internal Server Error"}', {})
                    return
                result = outcome.result or {}
                if not isinstance(result, dict) or "statusCode" not in result:
                    result = {"statusCode": 200, "body": json.dumps(result)}
                from shared.apigw import decode_body

                self._send(int(result["statusCode"]), decode_body(result), result.get("headers") or {})

            def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "connection"):
                        self.send_header(key, str(value))
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the functions' own logs are what the rehearsal keeps."""

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 64

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="http-api").start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- ECS ------------------------------------------------------------------------------------------------


@dataclass
class ContainerImage:
    """What the task definition's image runs: its ENTRYPOINT (from its Dockerfile) on this machine."""

    entrypoint: list[str]
    environment: dict[str, str] = field(default_factory=dict)


KILL_AFTER_S = 0.5
"""How long a task `Ecs.kill_next` picks runs before it is killed, unless a scenario sets `kill_after_s`."""


class Ecs(threading.Thread):
    """Runs every task RunTask created (seen in moto) as a local process: the image's entrypoint plus the
    override command, the task definition's environment plus overrides, the *task role's* credentials
    (with the IAM guard), a private /tmp. When the process ends (or StopTask is called) the task is
    stopped in moto and an 'ECS Task State Change' STOPPED event goes to the event bus."""

    def __init__(
        self,
        ecs: Any,
        cluster_arn: str,
        images: Mapping[str, ContainerImage],
        principals: Mapping[str, Principal],
        bus: EventBus,
        workdir: Path,
        outside: Mapping[str, str],
    ) -> None:
        super().__init__(daemon=True, name="ecs")
        self.ecs = ecs
        self.cluster_arn = cluster_arn
        self.images = images
        self.principals = principals
        self.bus = bus
        self.workdir = workdir
        self.outside = dict(outside)
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.finished: dict[str, dict[str, Any]] = {}
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.kill_next: Callable[[dict[str, Any]], bool] | None = None
        self.kill_after_s = KILL_AFTER_S
        """How long the task `kill_next` picks runs before it is killed (back to `KILL_AFTER_S` after each kill)."""

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._tick()
            except Exception as exc:
                if not self.stopping.is_set():
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            self.stopping.wait(0.3)

    def _tick(self) -> None:
        arns = self.ecs.list_tasks(cluster=self.cluster_arn).get("taskArns", [])
        fresh = [a for a in arns if a not in self.running and a not in self.finished]
        for chunk in (fresh[i : i + 100] for i in range(0, len(fresh), 100)):
            for task in self.ecs.describe_tasks(cluster=self.cluster_arn, tasks=chunk, include=["TAGS"])[
                "tasks"
            ]:
                self._start(task)
        alive = [arn for arn, process in self.running.items() if process.poll() is None]
        stopping = {
            task["taskArn"]
            for chunk in (alive[i : i + 100] for i in range(0, len(alive), 100))
            for task in self.ecs.describe_tasks(cluster=self.cluster_arn, tasks=chunk)["tasks"]
            if task.get("desiredStatus") == "STOPPED"
        }
        for arn, process in list(self.running.items()):
            code = process.poll()
            stop_requested = False
            if code is None:
                stop_requested = arn in stopping
                if stop_requested:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, 15)
                    try:
                        code = process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        os.killpg(process.pid, 9)
                        code = process.wait()
            if code is not None:
                self._stopped(
                    arn,
                    code,
                    "Task stopped by user" if stop_requested else "Essential container in task exited",
                )

    def _start(self, task: dict[str, Any]) -> None:
        arn = task["taskArn"]
        definition = self.ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])[
            "taskDefinition"
        ]
        container = definition["containerDefinitions"][0]
        image = self.images[container["image"]]
        override: dict[str, Any] = next(
            (
                o
                for o in task.get("overrides", {}).get("containerOverrides", [])
                if o.get("name") == container["name"]
            ),
            {},
        )
        env = {e["name"]: e["value"] for e in container.get("environment", [])}
        env.update({e["name"]: e["value"] for e in override.get("environment", [])})
        principal = self.principals[definition["taskRoleArn"]]
        task_dir = self.workdir / "tasks" / arn.rsplit("/", 1)[-1]
        (task_dir / "tmp").mkdir(parents=True)
        (task_dir / "home").mkdir()
        policy = principal.write(task_dir)
        sitecustomize = task_dir / "site"
        sitecustomize.mkdir()
        (sitecustomize / "sitecustomize.py").write_text(SITECUSTOMIZE.format(harness=str(HARNESS_DIR)))
        environment = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(task_dir / "home"),
            "LANG": "C.UTF-8",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE",
            "ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/rehearsal",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/rehearsal",
            "AWS_ACCESS_KEY_ID": "ASIATASKROLE",
            "AWS_SECRET_ACCESS_KEY": "rehearsal",
            "AWS_SESSION_TOKEN": f"role/{principal.name}",
            **image.environment,
            **self.outside,
            **env,
            "PYTHONPATH": str(sitecustomize),
            "REHEARSAL_IAM_POLICY": str(policy),
            "REHEARSAL_IAM_RECORD": str(self.workdir / "iam" / f"task-{principal.name}.jsonl"),
        }
        command = [*image.entrypoint, *override.get("command", container.get("command") or [])]
        log = (self.workdir / "logs" / f"task-{arn.rsplit('/', 1)[-1]}.log").open("ab")
        wrapped = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            'mount --bind "$1" /tmp && shift && exec "$@"',
            "sh",
            str(task_dir / "tmp"),
            *command,
        ]
        process = subprocess.Popen(
            wrapped,
            env=environment,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=str(task_dir / "home"),
            start_new_session=True,
        )
        log.close()
        self.running[arn] = process
        if self.kill_next is not None and self.kill_next(task):
            self.kill_next, delay, self.kill_after_s = None, self.kill_after_s, KILL_AFTER_S
            time.sleep(delay)
            os.killpg(process.pid, 9)

    def _stopped(self, arn: str, exit_code: int, reason: str) -> None:
        self.running.pop(arn, None)
        with contextlib.suppress(Exception):
            self.ecs.stop_task(cluster=self.cluster_arn, task=arn, reason=reason)
        task = self.ecs.describe_tasks(cluster=self.cluster_arn, tasks=[arn], include=["TAGS"])["tasks"][0]
        detail = json.loads(json.dumps(task, default=_iso))
        container_name = (detail.get("containers") or [{}])[0].get("name") or "main"
        detail.update(
            lastStatus="STOPPED",
            desiredStatus="STOPPED",
            stoppedReason=reason,
            stopCode="EssentialContainerExited" if "exited" in reason else "UserInitiated",
            stoppedAt=datetime.now(UTC).isoformat(),
        )
        containers = detail.get("containers") or [{"name": container_name}]
        for container in containers:
            container.update(lastStatus="STOPPED", exitCode=exit_code if exit_code >= 0 else 128 - exit_code)
        detail["containers"] = containers
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "account": "123456789012",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-east-1",
            "resources": [arn],
            "detail": detail,
        }
        self.finished[arn] = {"exit_code": exit_code, "reason": reason, "event": event}
        self.bus.put(event)

    def stop_all(self) -> None:
        self.stopping.set()
        for process in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


SITECUSTOMIZE = '''"""The rehearsal's IAM guard for a container's Python processes (the task role's statements)."""
import importlib.util, os, sys
_policy = os.environ.pop("REHEARSAL_IAM_POLICY", None)
_record = os.environ.pop("REHEARSAL_IAM_RECORD", None)
_paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in _paths if not p.endswith("/site"))
if not os.environ["PYTHONPATH"]:
    del os.environ["PYTHONPATH"]
if _policy and importlib.util.find_spec("botocore") is not None:  # a project's own python has no boto
    os.environ["REHEARSAL_IAM_POLICY"], os.environ["REHEARSAL_IAM_RECORD"] = _policy, _record
    sys.path.insert(0, {harness!r})
    import iam as _iam
    _iam.install_guard_from_env()
    sys.path.remove({harness!r})
    del sys.modules["iam"]
    os.environ.pop("REHEARSAL_IAM_POLICY", None)
    os.environ.pop("REHEARSAL_IAM_RECORD", None)
'''
