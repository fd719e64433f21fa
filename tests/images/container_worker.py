"""The embedded stack's worker command, replaced: start the worker *image* as Fargate would, then become
the `docker run` client (the local runtime watches it and signals its process group; `docker run`
passes SIGTERM on to the container, as ECS StopTask does).

Called as `container_worker.py --worker-id ID` with the stack's worker environment. The container gets:
- the worker task definition's environment and cpu/memory (from the synthesized template, via the
  JSON file named by ORCH_IMAGES_CONFIG);
- the RunTask overrides the worker manager would send (`FargateRuntime.overrides_for` on the stack's
  own launch environment): the same variables and the same `--worker-id ID` command;
- the worker's own token (ORCH_WORKER_TOKEN, minted by the stack's worker manager) and no secrets
  file: a worker resolves its secrets and its session through the API, as in AWS;
- the bare repositories, mounted at the same paths (owned by 10001 first: the worker pushes there, as to
  GitHub);
- the host's network, so that ORCH_API_URL (127.0.0.1) reaches the stack.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

IMAGE_UID = 10001


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker-id", required=True)
    worker_id = parser.parse_args().worker_id
    config = json.loads(Path(os.environ["ORCH_IMAGES_CONFIG"]).read_text())

    from functions.worker_manager.handler import launch_env
    from functions.worker_manager.settings import WorkerManagerSettings
    from shared.workers.fargate import FargateRuntime
    from shared.workers.local import WORKER_TOKEN_ENV
    from shared.workers.runtime import WorkerLaunch

    settings = WorkerManagerSettings()
    runtime = FargateRuntime(
        cluster="images-test",
        task_definition="worker",
        container_name="worker",
        subnets=["subnet-test"],
        security_groups=["sg-test"],
    )
    override = runtime.overrides_for(
        WorkerLaunch(
            worker_id=worker_id,
            task_id=None,
            env={**launch_env(settings), WORKER_TOKEN_ENV: os.environ[WORKER_TOKEN_ENV]},
        )
    )
    container = override["containerOverrides"][0]
    env = {**config["task_environment"], **{e["name"]: e["value"] for e in container["environment"]}}

    mounts: list[str] = []
    repos = settings.home / "repos"
    if repos.exists():
        subprocess.run(["chown", "-R", f"{IMAGE_UID}:{IMAGE_UID}", str(repos)], check=True)
        mounts += ["-v", f"{repos}:{repos}"]
    for path in config.get("read_only_mounts", []):
        mounts += ["-v", f"{path}:{path}:ro"]

    command = [
        config["docker"],
        "run",
        "--rm",
        "--name",
        f"orch-images-{worker_id}",
        "--label",
        config["label"],
        "--network",
        "host",
        "--cpus",
        str(config["cpus"]),
        "--memory",
        f"{config['memory_mib']}m",
        *mounts,
    ]
    for name, value in sorted(env.items()):
        command += ["-e", f"{name}={value}"]
    command += [config["image"], *container["command"]]
    print("container worker:", " ".join(command), flush=True)
    os.execv(command[0], command)  # noqa: S606  # the argv is built above, no shell


if __name__ == "__main__":
    main()
