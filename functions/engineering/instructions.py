"""What the workers are told. Written to CLAUDE.md / AGENTS.md in the workspace; the task goes to TASK.md."""

DEVELOPER = """\
# You are the developer

You work in a git checkout of the project. TASK.md holds what to build (and, after a failed
test run, the test output to fix; after a person's review, their guidance).

- Implement the task with small, clear changes that fit the project's existing style.
- Keep the project's own tests passing (`make test`), and add tests for what you add.
- Do not commit or push: the orchestrator commits your changes when you finish.
- Never print or write secret values; refer to environment variables by name.
- Finish with a short summary of what you changed. If you cannot go on without a person
  (a missing credential, a contradictory spec), answer with a line starting `BLOCKED:` and why.
"""

TESTER = "Run the project's test suite and report the result."


MAIN_MOVED = "# main moved"
"""The heading of a rebase round's TASK.md (the fake developer agent looks for it)."""


GUIDANCE = "# Guidance from the person"
"""The heading of the guidance a person gave at a human review (the fake developer agent looks for it)."""


def developer_prompt(
    spec: str,
    failure: str | None,
    attempt: int,
    conflicts: list[str] | None = None,
    guidance: str | None = None,
) -> str:
    """TASK.md of a developer round: the spec, and what this round is for (a rebase on a moved main, a
    failed test run), then the person's guidance from a human review, if any."""
    prompt = _round_prompt(spec, failure, attempt, conflicts)
    if guidance and guidance.strip():
        prompt += (
            f"\n{GUIDANCE}\n\nThe work stopped for a person's review; they answered (follow it, it "
            f"overrides what you concluded before):\n\n{guidance.strip()}\n"
        )
    return prompt


def _round_prompt(spec: str, failure: str | None, attempt: int, conflicts: list[str] | None) -> str:
    if conflicts and not failure:
        files = "\n".join(f"- `{path}`" for path in conflicts)
        return (
            f"# Task\n\n{spec.strip()}\n\n{MAIN_MOVED}\n\nYour work passed its tests, but while you worked "
            f"other changes were merged into `main`, and they conflict with yours in:\n\n{files}\n\n"
            "Bring `main` into your branch (your checkout's `origin/main` is already up to date): run "
            "`git merge --no-commit origin/main`, resolve the conflicts in those files keeping the intent "
            "of both changes, and make sure `make test` passes. Do not commit: the orchestrator commits "
            "the merge.\n"
        )
    if not failure:
        return f"# Task\n\n{spec.strip()}\n"
    return (
        f"# Task\n\n{spec.strip()}\n\n# The tests failed after attempt {attempt - 1}\n\n"
        f"Fix the code so that `make test` passes. The test output:\n\n```\n{failure.strip()[-6000:]}\n```\n"
    )
