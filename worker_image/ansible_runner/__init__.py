"""The Ansible runner: runs one playbook (deploy, undeploy, provision, ping) for one job and reports it.

`python -m worker_image.ansible_runner --job FILE [--publish]` locally (the infra consumer waits for it),
`--job-env ORCH_ANSIBLE_JOB --publish` as a Fargate task. `run_job` is the logic; `results` maps its
outcome onto the queue contracts; the playbooks live in `playbooks/`.

Decisions
---------
- Secrets travel as references and are resolved here, at the last moment; their values go to Ansible
  only in a 0600 vars file inside a private data dir that is deleted after the run, are used only by
  `no_log` tasks, and every string reported is redacted.
- Every string of a job reaches Ansible tagged `!unsafe`: a job cannot make Ansible evaluate a template.
- On the built-in localhost server there is no systemd: apps run under `playbooks/files/supervise.py`,
  a small daemon supervisor (restart with backoff, give up after quick crashes, pidfile, log file).
- Provision with connection local changes nothing: the orchestrator's own machine is not ours to manage,
  and a ping of it runs no playbook (its facts are read directly).
- Every module run costs a Python start and an AnsiballZ round (~0.5 s of CPU each), so the deploy playbook
  keeps them few on the built-in server: the runner renders the env file, and one `script` run of
  `supervise.py` installs it, installs the supervisor, restarts the service and waits for its health.
"""
