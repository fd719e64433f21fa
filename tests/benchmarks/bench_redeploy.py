"""A redeploy on the built-in localhost server, as a person's client sees it.

    python -m tests.benchmarks.bench_redeploy [--redeploys N]

Deploys a rendered project into slot a (warm-up, not measured), then N redeploys, each a new commit
into the other slot, with the real Ansible runner and playbooks (blue/green: the new slot starts beside
the serving one and the stable port's forwarder switches to it once it is healthy). A client polls the
stable URL every 100 ms, a new connection each time, during the whole run. Prints per redeploy:

- `to serving`: from "deploy started" (the runner is called) to the first poll answered by the new
  release (100 ms resolution);
- `run`: the whole Ansible run (it goes on after the switch: the previous slot drains, then stops);
- the polls made and how many failed, and the longest gap between 200s (the goal: no failed poll).

Numbers only; nothing about time is asserted. The load average is printed with them: on a shared
machine compare runs made under similar load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.secrets.local import LocalSecrets
from tests.ansible_support import AppRepo, free_port, kill_project, make_app_repo
from tests.stable_poller import StablePoller
from worker_image.ansible_runner.job import RunnerJob
from worker_image.ansible_runner.runner import run_job

LOCALHOST = {"handle": "localhost", "host": "127.0.0.1", "connection": "local"}


@dataclass
class Redeploy:
    release: int
    slot: str
    to_serving_s: float | None
    run_s: float
    status: str
    polls: int
    failed_polls: int
    longest_gap_s: float


def _job(repo: AppRepo, root: Path, sha: str, slot: str, port: int, stable: int, release: int) -> RunnerJob:
    return RunnerJob.model_validate(
        {
            "request_id": str(uuid.uuid4()),
            "kind": "deploy",
            "target": LOCALHOST,
            "project_id": "bench",
            "project_name": "bench_app",
            "repo_url": str(repo.bare),
            "ref": sha,
            "port": port,
            "slot": slot,
            "stable_port": stable,
            "release": release,
            "deploy_root": str(root / "apps"),
            "timeout_s": 300,
        }
    )


def _new_release(repo: AppRepo, release: int) -> str:
    server = repo.work / "app" / "server.py"
    text = server.read_text()
    old = '{"status": "ok"}' if release == 1 else f'{{"status": "release-{release - 1}"}}'
    server.write_text(text.replace(old, f'{{"status": "release-{release}"}}'))
    return repo.commit(f"Release {release}")


def _first_serving(poller: StablePoller, release: int, since: float) -> float | None:
    wanted = f"release-{release}"
    for poll in poller.polls:
        if poll.at >= since and poll.ok and json.loads(poll.body or b"{}").get("status") == wanted:
            return poll.at - since
    return None


def run(redeploys: int) -> list[Redeploy]:
    """Warm-up deploy, then `redeploys` measured ones; everything started is stopped before returning."""
    rows: list[Redeploy] = []
    with tempfile.TemporaryDirectory(prefix="bench-redeploy-") as tmp:
        root = Path(tmp)
        secrets = LocalSecrets(root / "secrets.json")
        repo = make_app_repo(root / "app", project_name="bench-app")
        ports = {"a": free_port(), "b": free_port()}
        stable = free_port()
        app_dir = root / "apps" / "bench_app"
        url = f"http://127.0.0.1:{stable}/health"
        try:
            first = run_job(_job(repo, root, _new_release(repo, 1), "a", ports["a"], stable, 1), secrets)
            if first.status != "success":
                raise RuntimeError(f"the warm-up deploy failed: {first.error}")
            for release in range(2, redeploys + 2):
                slot = "b" if release % 2 == 0 else "a"
                job = _job(repo, root, _new_release(repo, release), slot, ports[slot], stable, release)
                with StablePoller(url) as poller:
                    time.sleep(0.5)  # the client is polling before the deploy starts
                    started = time.monotonic()
                    outcome = run_job(job, secrets)
                    run_s = time.monotonic() - started
                    time.sleep(0.5)
                rows.append(
                    Redeploy(
                        release=release,
                        slot=slot,
                        to_serving_s=_first_serving(poller, release, started),
                        run_s=run_s,
                        status=outcome.status if outcome.status == "success" else f"failed: {outcome.error}",
                        polls=len(poller.polls),
                        failed_polls=len(poller.failures),
                        longest_gap_s=poller.longest_gap_s(),
                    )
                )
        finally:
            undeploy = _job(repo, root, "main", "a", ports["a"], stable, 1).model_copy(
                update={"kind": "undeploy", "request_id": str(uuid.uuid4())}
            )
            run_job(undeploy, secrets)
            kill_project(app_dir)
    return rows


def _print(rows: list[Redeploy]) -> None:
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(
        f"{'release':>7} {'slot':>4} {'to serving':>10} {'run':>7} {'polls':>5} {'failed':>6} {'gap':>6}  status"
    )
    for row in rows:
        serving = f"{row.to_serving_s:.1f} s" if row.to_serving_s is not None else "never"
        print(
            f"{row.release:>7} {row.slot:>4} {serving:>10} {row.run_s:>5.1f} s {row.polls:>5} "
            f"{row.failed_polls:>6} {row.longest_gap_s:>4.1f} s  {row.status}"
        )
    served = [row.to_serving_s for row in rows if row.to_serving_s is not None]
    if served:
        print(f"median deploy started -> new release serving: {statistics.median(served):.1f} s")
    print(
        f"failed polls in all: {sum(row.failed_polls for row in rows)} of {sum(row.polls for row in rows)}; "
        f"longest gap in 200s: {max((row.longest_gap_s for row in rows), default=0.0):.1f} s"
    )


def main(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redeploys", type=int, default=3)
    args = parser.parse_args(argv)
    _print(run(args.redeploys))


if __name__ == "__main__":
    main()
