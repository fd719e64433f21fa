"""The cloud rehearsal: the synthesized stack, stood up as AWS would run it, on this machine.

    with Rehearsal(workdir, postgres_admin_url) as stack:
        stack.api_url, stack.admin_key, stack.lambda_.invoke(...), stack.denials() ...

Order of a `cdk deploy`: synth → resources (moto server, the real PostgreSQL) → the migration hook
(the CDK trigger invokes it synchronously) → triggers live (queue mappings, rules, routes, ECS).
The outside world the functions talk to is replaced by local servers: AWS (AWS_ENDPOINT_URL → the
moto server), GitHub (ORCH_GITHUB_API_URL → a fake GitHub with git over HTTP) and Telegram
(ORCH_TELEGRAM_API_BASE → a fake Bot API). Those three variables are the only ones the rehearsal
adds to a function's template environment (besides what the Lambda runtime itself sets).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.cloud.runtime import (
    ContainerImage,
    Ecs,
    EventBus,
    FunctionSpec,
    HttpApi,
    Lambda,
    Principal,
    Rule,
    SqsEventSource,
)
from tests.cloud.stage import Stager
from tests.cloud.template import Resolver, Template
from tests.layer_closure import allowed_modules

GITHUB_OWNER = "acme"
GITHUB_TOKEN = "ghp_rehearsal0123456789abcdefghijklmnopqrst"
TELEGRAM_TOKEN = "123456:rehearsal-bot-token-abcdefghijklmnopqrstu"
TELEGRAM_ADMIN_ID = 4242


def synthesize(outdir: Path, context: Mapping[str, Any]) -> tuple[Path, str]:
    import aws_cdk

    from infra_cdk.app import build_app

    # a second rehearsal in this process (another test module) synthesizes into the same, just emptied,
    # directory: without this the CDK's in-process staging cache believes the assets are already there
    aws_cdk.AssetStaging.clear_asset_hash_cache()
    app, stack = build_app(outdir=str(outdir), context=dict(context))
    app.synth()
    return outdir, stack.stack_name


def _pascal_to_kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


class Rehearsal:
    def __init__(
        self,
        workdir: Path,
        postgres_admin_url: str,
        *,
        context: Mapping[str, Any] | None = None,
        database: Mapping[str, Any] | None = None,
        worker_image_env: Mapping[str, str] | None = None,
        github_bind: str = "127.0.0.1",
    ) -> None:
        self.workdir = workdir
        self.postgres_admin_url = postgres_admin_url
        self.context = {
            "github_owner": GITHUB_OWNER,
            "telegram_admins": str(TELEGRAM_ADMIN_ID),
            "agent_secret_refs": "{}",
            **(context or {}),
        }
        self.database_override = dict(database or {})
        self.worker_image_env = dict(worker_image_env or {})
        self.github_bind = github_bind
        """Where the fake GitHub listens: an address the test servers can reach too (they clone from it)."""
        """ENV lines of the worker image as built for the rehearsal (e.g. ORCH_AGENT_COMMAND for the command agent)."""
        self.timings: dict[str, float] = {}
        self._closers: list[Any] = []

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> Rehearsal:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = round(time.monotonic() - started, 2)

    def start(self) -> None:
        import boto3
        from moto.server import ThreadedMotoServer

        from tests.fakes.github_server import FakeGitHub
        from tests.fakes.telegram_server import FakeTelegram

        for sub in ("logs", "iam", "tmp", "tasks"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        assembly, stack_name = synthesize(self.workdir / "cdk.out", self.context)
        self._timed("synth_s", t0)
        self.template = Template.load(assembly, stack_name)
        self.resolver = Resolver(self.template)

        t0 = time.monotonic()
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        self._closers.append(self.moto.stop)
        host, port = self.moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        # moto's backends live in this process: a second rehearsal (another test module) would otherwise
        # start with the first one's queues, secrets and tables
        import httpx

        httpx.post(f"{self.moto_url}/moto-api/reset", timeout=30).raise_for_status()
        self.session = boto3.Session(
            aws_access_key_id="rehearsal-admin",
            aws_secret_access_key="rehearsal-admin",
            region_name="us-east-1",
        )
        self.github = FakeGitHub(
            self.workdir / "github",
            GITHUB_TOKEN,
            login=GITHUB_OWNER,
            git_over_http=True,
            bind=self.github_bind,
        ).start()
        self._closers.append(self.github.stop)
        self.telegram = FakeTelegram(TELEGRAM_TOKEN)
        self.telegram.start()
        self._closers.append(self.telegram.stop)
        self._database_server()
        self.database = self._create_database()

        self.lambda_ = Lambda([], self.workdir, {})
        self.http_api = HttpApi(self.lambda_)
        self._closers.append(self.http_api.stop)
        Stager(self.template, self.session_with_endpoint(), self.database, self.http_api.url).stage()
        self._operator_setup()
        self._timed("stage_s", t0)

        self.outside = {
            "AWS_ENDPOINT_URL": self.moto_url,
            "REHEARSAL_DB_RESOURCE_IDS": json.dumps(self.database_resource_ids()),
            "ORCH_GITHUB_API_URL": self.github.url,
            "ORCH_TELEGRAM_API_BASE": self.telegram.url,
        }
        specs = [
            self._function_spec(logical)
            for logical, _ in self.template.of_type("AWS::Lambda::Function")
            if self._is_ours(logical)
        ]
        self.lambda_.specs = {spec.name: spec for spec in specs}
        self.lambda_.by_arn = {spec.arn: spec.name for spec in specs}
        self.lambda_.by_logical = {spec.logical: spec.name for spec in specs}
        self.lambda_.outside = self.outside
        self._closers.append(self.lambda_.stop)
        self._routes()

        t0 = time.monotonic()
        self.deploy_hook_result = self.run_deploy_hook()
        self._timed("deploy_hook_s", t0)
        if self.deploy_hook_result.error is not None:
            raise RuntimeError(f"the deploy hook failed: {self.deploy_hook_result.error}")

        self.bus = EventBus(self.lambda_, self._rules())
        self._event_sources()
        self._ecs()

    def stop(self) -> None:
        for source in getattr(self, "sources", []):
            source.stopping.set()
        if hasattr(self, "ecs"):
            self.ecs.stop_all()
        if getattr(self, "database", None):
            self._drop_database()
        for close in reversed(self._closers):
            try:
                close()
            except Exception:  # noqa: S112 - teardown goes on
                continue
        self._closers.clear()

    # -- pieces ---------------------------------------------------------------------------------------

    def session_with_endpoint(self) -> Any:
        session = self.session
        endpoint = self.moto_url

        class _Session:
            def client(self, service: str, **kwargs: Any) -> Any:
                return session.client(service, endpoint_url=endpoint, **kwargs)

        return _Session()

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.moto_url)

    def _database_server(self) -> None:
        """RDS as the template asks for it: when the API verifies the server (ORCH_DATABASE_TLS=verify-full
        against the CA bundle in its code), the database is a TLS PostgreSQL whose certificate comes from a CA
        put in that bundle's place in the staged asset, as RDS's certificate chains to the RDS CAs."""
        modes = {
            props.get("Environment", {}).get("Variables", {}).get("ORCH_DATABASE_TLS")
            for _, props in (
                (lg, self.template.props(lg)) for lg, _ in self.template.of_type("AWS::Lambda::Function")
            )
        }
        self.database_tls = "verify-full" if "verify-full" in modes else None
        if self.database_tls is None:
            return
        from tests.tls_postgres import tls_postgres, unavailable

        reason = unavailable()
        if reason:
            raise RuntimeError(
                f"the template verifies the database's certificate; no TLS PostgreSQL here: {reason}"
            )
        context = tls_postgres()
        server = context.__enter__()
        self._closers.append(lambda: context.__exit__(None, None, None))
        self.postgres_admin_url = server.url
        ca = Path(server.ca_pem_path).read_text()
        bundles = list(self.template.assembly_dir.glob("asset.*/functions/api/rds-global-bundle.pem"))
        if not bundles:
            raise RuntimeError(
                "verify-full is set but no staged asset carries functions/api/rds-global-bundle.pem"
            )
        for bundle in bundles:
            bundle.write_text(ca)

    def _create_database(self) -> dict[str, Any]:
        from sqlalchemy import create_engine, text

        # the template's database name when the server is the rehearsal's own (the functions are told it as
        # a plain value, ORCH_DATABASE_NAME); a random one on a shared server
        name = (
            self._template_database_name() if self.database_tls else None
        ) or f"rehearsal_{secrets.token_hex(4)}"
        engine = create_engine(self.postgres_admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            exists = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = 'orchestrator'")).first()
            if not exists:
                connection.execute(text("CREATE ROLE orchestrator LOGIN"))
            # what RDS gives its master user: CREATEROLE, and rds_iam (its role for IAM database
            # authentication) to hand on; the deploy hook makes the API's login with them
            connection.execute(text("ALTER ROLE orchestrator CREATEROLE"))
            connection.execute(
                text(
                    "DO $$ BEGIN CREATE ROLE rds_iam NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
                )
            )
            connection.execute(text("GRANT rds_iam TO orchestrator WITH ADMIN OPTION"))
            connection.execute(text(f'CREATE DATABASE "{name}" OWNER orchestrator'))
        engine.dispose()
        url = urlsplit(self.postgres_admin_url.replace("+pg8000", ""))
        return {
            "host": url.hostname or "127.0.0.1",
            "port": url.port or 5432,
            "dbname": name,
            **self.database_override,
        }

    def _template_database_name(self) -> str | None:
        for kind, key in (("AWS::RDS::DBCluster", "DatabaseName"), ("AWS::RDS::DBInstance", "DBName")):
            for logical, _ in self.template.of_type(kind):
                name = self.template.props(logical).get(key)
                if isinstance(name, str):
                    return name
        return None

    def database_resource_ids(self) -> dict[str, str]:
        """{host: resource id} of the staged database: what an IAM login token names (tests/cloud/iam.py)."""
        for kind, attribute in (
            ("AWS::RDS::DBCluster", "DBClusterResourceId"),
            ("AWS::RDS::DBInstance", "DbiResourceId"),
        ):
            for logical, _ in self.template.of_type(kind):
                if kind == "AWS::RDS::DBInstance" and self.template.props(logical).get("DBClusterIdentifier"):
                    continue  # an Aurora writer: the login is to its cluster
                attrs = self.template.physical[logical].attrs
                return {str(attrs["Endpoint.Address"]): str(attrs[attribute])}
        return {}

    def _drop_database(self) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.postgres_admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{self.database["dbname"]}" WITH (FORCE)'))
        finally:
            engine.dispose()
        self.database = None  # type: ignore[assignment]

    @property
    def resource_prefix(self) -> str:
        return (
            str(self.context.get("prefix", "codegen-orch")) + "-" + str(self.context.get("env_name", "dev"))
        )

    def _operator_setup(self) -> None:
        """What the README tells an operator to do after the first deploy: the GitHub token, the bot token
        (in Secrets Manager, or with `-c operator_secrets=ssm` as SecureString parameters)."""
        prefix = self.resource_prefix
        if self.context.get("operator_secrets") == "ssm":
            ssm = self.client("ssm")
            for path, value in (("github/token", GITHUB_TOKEN), ("telegram/bot_token", TELEGRAM_TOKEN)):
                ssm.put_parameter(Name=f"/{prefix}/{path}", Value=value, Type="SecureString")
            return
        client = self.client("secretsmanager")
        client.create_secret(Name=f"{prefix}/github/token", SecretString=GITHUB_TOKEN)
        bot_secret = self.physical_ref("TelegramBotTokenSecret")
        client.put_secret_value(SecretId=bot_secret, SecretString=TELEGRAM_TOKEN)

    def physical_ref(self, logical_prefix: str) -> str:
        matches = [
            lg
            for lg in self.template.resources
            if lg.startswith(logical_prefix) and self.template.resources[lg]["Type"] != "AWS::IAM::Policy"
        ]
        exact = [lg for lg in matches if re.fullmatch(rf"{logical_prefix}[0-9A-F]{{8}}", lg)]
        chosen = exact or matches
        if len(chosen) != 1:
            raise KeyError(f"{logical_prefix!r} names {chosen or 'nothing'} in the template")
        return str(self.resolver.ref(chosen[0]))

    def _is_ours(self, logical: str) -> bool:
        handler = str(self.template.props(logical).get("Handler", ""))
        return handler.startswith("functions.")

    def principal(self, role_arn_value: Any) -> Principal:
        role_logical = role_arn_value["Fn::GetAtt"][0]
        statements = self.resolver.resolve(self.template.role_statements(role_logical))
        return Principal(
            self.resolver.ref(role_logical), self.resolver.get_att(role_logical, "Arn"), statements
        )

    def _function_spec(self, logical: str) -> FunctionSpec:
        from layers import build

        props = self.template.props(logical)
        name = self.resolver.ref(logical)
        code_paths = [str(self.template.asset_dir(logical))]
        requirements: list[str] = []
        layer_names: list[str] = []
        for layer in props.get("Layers", []):
            layer_logical = layer["Ref"]
            # logical ids are <construct path><hash>: RuntimeApiLayerA6BC0ACD -> "api"
            layer_id = re.sub(r"[0-9A-F]{8}$", "", layer_logical).removeprefix("Runtime")
            layer_name = _pascal_to_kebab(layer_id.removesuffix("Layer"))
            layer_names.append(layer_name)
            requirements += build.requirements(layer_name)
        environment = {
            k: str(v)
            for k, v in self.resolver.resolve(props.get("Environment", {}).get("Variables", {})).items()
        }
        return FunctionSpec(
            logical=logical,
            name=name,
            arn=self.resolver.get_att(logical, "Arn"),
            handler=props["Handler"],
            environment=environment,
            timeout_s=int(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            principal=self.principal(props["Role"]),
            code_paths=code_paths,
            allowed_modules=sorted(allowed_modules(requirements)),
            layer_names=layer_names,
            snap_start=props.get("SnapStart", {}).get("ApplyOn") == "PublishedVersions",
        )

    def run_deploy_hook(self) -> Any:
        """What the CDK trigger does on create and on every update that changes the hook."""
        trigger = next(
            props
            for _, props in (
                (lg, self.template.props(lg)) for lg, _ in self.template.of_type("Custom::Trigger")
            )
        )
        version_ref = trigger["HandlerArn"]["Ref"]
        function = self.template.props(version_ref)["FunctionName"]["Ref"]
        return self.lambda_.invoke(function, {})

    def _routes(self) -> None:
        for _, route in self.template.of_type("AWS::ApiGatewayV2::Route"):
            props = route["Properties"]
            integration = self.resolver.resolve(props["Target"]).removeprefix("integrations/")
            integration_logical = next(
                lg for lg in self.template.resources if self.resolver.ref(lg) == integration
            )
            target = self.template.props(integration_logical)["IntegrationUri"]
            self.http_api.routes[props["RouteKey"]] = self.resolver.resolve(target)
        self.api_url = self.http_api.url

    def _rules(self) -> list[Rule]:
        rules = []
        for _, resource in self.template.of_type("AWS::Events::Rule"):
            props = self.resolver.resolve(resource["Properties"])
            rules.append(
                Rule(
                    name=props["Name"],
                    pattern=props.get("EventPattern"),
                    schedule=props.get("ScheduleExpression"),
                    targets=props.get("Targets", []),
                )
            )
        return rules

    def _event_sources(self) -> None:
        sqs = self.client("sqs")
        self.sources: list[SqsEventSource] = []
        for _, mapping in self.template.of_type("AWS::Lambda::EventSourceMapping"):
            props = mapping["Properties"]
            queue_arn = self.resolver.resolve(props["EventSourceArn"])
            queue_logical = props["EventSourceArn"]["Fn::GetAtt"][0]
            function = self.lambda_.name_of(self.resolver.resolve(props["FunctionName"]))  # `<name>:live` too
            source = SqsEventSource(
                self.lambda_, function, props, self.resolver.ref(queue_logical), queue_arn, sqs
            )
            source.start()
            self.sources.append(source)

    def _ecs(self) -> None:
        assets = json.loads(
            (self.template.assembly_dir / f"{self.template.stack_name}.assets.json").read_text()
        )
        images: dict[str, ContainerImage] = {}
        for image_hash, image in assets.get("dockerImages", {}).items():
            dockerfile = (
                self.template.assembly_dir / image["source"]["directory"] / image["source"]["dockerFile"]
            )
            entrypoint, env = _dockerfile_entry(dockerfile)
            if image["source"]["dockerFile"].endswith("/Dockerfile"):
                env = {**env, **self.worker_image_env}
            uri = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/cdk-hnb659fds-container-assets-123456789012-us-east-1:{image_hash}"
            images[uri] = ContainerImage(entrypoint, env)
        principals: dict[str, Principal] = {}
        for _, definition in self.template.of_type("AWS::ECS::TaskDefinition"):
            principal = self.principal(definition["Properties"]["TaskRoleArn"])
            principals[principal.arn] = principal
        cluster_logical = next(lg for lg, _ in self.template.of_type("AWS::ECS::Cluster"))
        self.ecs = Ecs(
            self.client("ecs"),
            self.resolver.get_att(cluster_logical, "Arn"),
            images,
            principals,
            self.bus,
            self.workdir,
            self.outside,
        )
        self.ecs.start()

    # -- what tests read ------------------------------------------------------------------------------

    def secret_value(self, secret_id: str) -> str:
        return str(self.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])

    @property
    def admin_key(self) -> str:
        return self.secret_value(self.physical_ref("ApiAdminKey"))

    def iam_records(self) -> list[dict[str, Any]]:
        records = []
        for path in sorted((self.workdir / "iam").glob("*.jsonl")):
            for line in path.read_text().splitlines():
                if line.strip():
                    records.append({**json.loads(line), "file": path.stem})
        return records

    def denials(self) -> list[dict[str, Any]]:
        return [r for r in self.iam_records() if not r.get("allowed")]

    def send_grants(self) -> set[tuple[str, str]]:
        """(role ARN, queue ARN) for every sqs:SendMessage a function or task role is granted."""
        from tests.cloud.iam import action_match, arn_match

        queues = [self.resolver.get_att(lg, "Arn") for lg, _ in self.template.of_type("AWS::SQS::Queue")]
        principals = [spec.principal for spec in self.lambda_.specs.values()] + list(
            self.ecs.principals.values()
        )
        grants = set()
        for principal in principals:
            for statement in principal.statements:
                actions = statement.get("Action", [])
                if statement.get("Effect") != "Allow" or not any(
                    action_match(a, "sqs:SendMessage")
                    for a in ([actions] if isinstance(actions, str) else actions)
                ):
                    continue
                resources = statement.get("Resource", [])
                for pattern in [resources] if isinstance(resources, str) else resources:
                    grants |= {(principal.arn, q) for q in queues if arn_match(pattern, q)}
        return grants

    def sends(self, principal_part: str, queue_part: str) -> list[dict[str, Any]]:
        """Allowed SendMessage calls of a role (by a part of its name) to a queue (by a part of its name)."""
        return [
            r
            for r in self.iam_records()
            if r["action"] == "sqs:SendMessage"
            and r["allowed"]
            and principal_part in r["principal"]
            and r["resource"].endswith(queue_part)
        ]

    def function_log(self, name_part: str) -> str:
        return "\n".join(
            p.read_text(errors="replace")
            for p in sorted((self.workdir / "logs").glob(f"*{name_part}*.log" if name_part else "*.log"))
        )

    def queue_url(self, logical_prefix: str) -> str:
        return self.physical_ref(logical_prefix)

    def wait_for(self, predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what} (last: {last!r}); denials: {self.denials()[:5]}"
        )


def _dockerfile_entry(dockerfile: Path) -> tuple[list[str], dict[str, str]]:
    """ENTRYPOINT of the final stage, as an exec-form list, and its ENV lines that matter off-image."""
    entrypoint: list[str] = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("ENTRYPOINT"):
            entrypoint = json.loads(line.removeprefix("ENTRYPOINT").strip())
    if entrypoint and entrypoint[0] == "python":
        import sys

        entrypoint[0] = sys.executable
    elif entrypoint:
        import sys

        candidate = Path(sys.executable).parent / entrypoint[0]
        if candidate.exists():
            entrypoint[0] = str(candidate)
    if not entrypoint:
        raise RuntimeError(f"{dockerfile}: no ENTRYPOINT")
    return entrypoint, {}
