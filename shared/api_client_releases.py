"""The API client's calls about releases: the deploy graph starts and finishes them, people list them and
roll back to one."""

from __future__ import annotations

from shared.api_transport import ApiTransport
from shared.contracts.api import Page, PortAllocation, Release, RollbackRequest, Task


class ReleaseCalls(ApiTransport):
    """Releases of a project: one per deploy task, numbered 1, 2, 3... per project."""

    def start_release(
        self,
        project_id: str,
        task_id: str,
        commit_sha: str,
        ref: str | None,
        server_handle: str,
        slot: str,
        port: int,
        rollback_of: int | None = None,
    ) -> Release:
        """Internal: the release of deploy task `task_id`, created once; asked again (a redelivery, a fix
        round) it comes back, with commit_sha/ref/server/slot/port updated while it is still deploying."""
        body = self._body(
            project_id=project_id,
            task_id=task_id,
            commit_sha=commit_sha,
            ref=ref,
            server_handle=server_handle,
            slot=slot,
            port=port,
            rollback_of=rollback_of,
        )
        return self._as(Release, self.request("POST", "/internal/releases", json=body))

    def finish_release(
        self, release_id: str, status: str, url: str | None = None, error: str | None = None
    ) -> Release:
        """Internal: `deploying` -> `serving` (the previous serving release becomes superseded) or
        `failed`. The same status again returns the row unchanged; any other change is a ConflictError."""
        body = self._body(status=status, url=url, error=error)
        data = self.request("POST", f"/internal/releases/{release_id}/finish", json=body)
        return self._as(Release, data)

    def list_releases(
        self, project_id: str, cursor: str | None = None, limit: int = 50, status: str | None = None
    ) -> Page[Release]:
        """Newest first."""
        params = {"cursor": cursor, "limit": limit, "status": status}
        return self._as(Page[Release], self.request("GET", f"/projects/{project_id}/releases", params=params))

    def get_release(self, project_id: str, number: int) -> Release:
        return self._as(Release, self.request("GET", f"/projects/{project_id}/releases/{number}"))

    def current_release(self, project_id: str) -> Release | None:
        """The project's one `serving` release, or None."""
        page = self.list_releases(project_id, limit=1, status="serving")
        return page.items[0] if page.items else None

    def rollback(self, project_id: str, to: int | None = None) -> Task:
        """A deploy task shipping release `to`'s commit (None: the newest superseded release older than
        the current one). NotFoundError / ConflictError naming `to` when there is none to go back to."""
        body = self._body(RollbackRequest(to=to))
        return self._as(
            Task, self.request("POST", f"/projects/{project_id}/rollback", json=body, idempotent=True)
        )

    def free_project_ports(self, handle: str, project_id: str) -> list[PortAllocation]:
        """Every port the project holds on the server (its stable port and both slots'), freed at once:
        what an undeploy gives back. Nothing held answers an empty list."""
        data = self.request("DELETE", f"/servers/{handle}/ports", params={"project_id": project_id})
        return self._as(list[PortAllocation], data)
