"""The API client's calls about gates: a graph parks its task at one, a person answers it."""

from __future__ import annotations

from shared.api_transport import ApiTransport


class GateCalls(ApiTransport):
    """Approvals (plan / deploy) and human reviews: request (internal), approve, reject, resume."""
