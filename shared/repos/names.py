"""Repository and branch names, checked before they become a filesystem path or a URL path.

Both adapters apply the same rules, so a name that works embedded works on GitHub: `owner/name`
with segments of `[A-Za-z0-9._-]` (GitHub's own alphabet), never `.`/`..`, never ending in `.git`
(GitHub silently strips it, and locally it would double the suffix).
"""

from __future__ import annotations

import re

from shared.repos.port import RepoHostError

MAX_SEGMENT_CHARS = 100
"""GitHub's limit for a repository name; owners are shorter still."""

_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
# git check-ref-format's forbidden characters: controls, space, ~ ^ : ? * [ \ and DEL.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20~^:?*\[\\\x7f]")


class InvalidRepoName(RepoHostError, ValueError):
    """A repository or branch name refused before it reached a path, a URL or git's argv."""


def split_full_name(full_name: str) -> tuple[str, str]:
    """`(owner, name)` of a valid `owner/name`; raises `InvalidRepoName` saying what is wrong."""
    if not isinstance(full_name, str) or full_name.count("/") != 1:
        raise InvalidRepoName(f"invalid repository name {full_name!r}: expected owner/name")
    owner, name = full_name.split("/")
    for label, segment in (("owner", owner), ("name", name)):
        problem = _segment_problem(segment)
        if problem:
            raise InvalidRepoName(f"invalid repository name {full_name!r}: the {label} {problem}")
    return owner, name


def check_full_name(full_name: str) -> str:
    """The name itself, once valid (for use inline)."""
    split_full_name(full_name)
    return full_name


def check_owner(owner: str) -> str:
    """A user or organisation name on its own (settings, the GitHub adapter's owner)."""
    problem = _segment_problem(owner) if isinstance(owner, str) else "is not a string"
    if problem:
        raise InvalidRepoName(f"invalid repository owner {owner!r}: it {problem}")
    return owner


def _segment_problem(segment: str) -> str | None:
    if not segment:
        return "is empty"
    if segment in {".", ".."}:
        return "is a relative path segment"
    if len(segment) > MAX_SEGMENT_CHARS:
        return f"is longer than {MAX_SEGMENT_CHARS} characters"
    if not _SEGMENT.fullmatch(segment):
        return "may only contain letters, digits, '.', '_' and '-'"
    if segment.lower().endswith(".git"):
        return "must not end in '.git'"
    return None


def check_branch_name(branch: str) -> str:
    """The branch, if git would accept it as `refs/heads/<branch>` (the rules of `git check-ref-format`).

    Checked in Python rather than by running git so the GitHub adapter needs no git binary; it also
    keeps `..` and a leading `-` out of URLs and argv.
    """
    problem: str | None = None
    if not isinstance(branch, str) or not branch:
        problem = "is empty"
    elif branch.startswith("-"):
        problem = "starts with '-'"
    elif branch == "@" or "@{" in branch:
        problem = "contains '@{' or is '@'"
    elif _REF_FORBIDDEN.search(branch):
        problem = "contains a space, a control character or one of ~^:?*[\\"
    elif ".." in branch or "//" in branch or branch.startswith("/") or branch.endswith(("/", ".")):
        problem = "has '..', '//', or a leading/trailing '/' or trailing '.'"
    elif any(part.startswith(".") or part.endswith(".lock") for part in branch.split("/")):
        problem = "has a component starting with '.' or ending in '.lock'"
    if problem:
        raise InvalidRepoName(f"invalid branch name {branch!r}: it {problem}")
    return branch
