"""The Product Owner consumer's configuration."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.service_client import ServiceApiSettings
from shared.telegram.settings import TelegramSettings


class ProductOwnerSettings(TelegramSettings, ServiceApiSettings):
    """Telegram (to answer), the API as the service, and which agent plays the PO."""

    po_agent: Annotated[
        str,
        Field(
            min_length=1, description="Agent of PO workers: claude-code | factory-droid | codex | command."
        ),
    ] = "claude-code"
    po_agent_command: Annotated[
        str | None, Field(description="Command line for the `command` agent (tests, home-made agents).")
    ] = None
    po_timeout_s: Annotated[
        int, Field(gt=0, le=86_400, description="Seconds the PO may work on one message.")
    ] = 600
    po_start_claim_s: Annotated[
        int,
        Field(gt=0, description="How long a PO start (or one hand-over) holds the person's lock at most."),
    ] = 300
    po_worker_api_url: Annotated[
        str | None, Field(description="API URL the PO's CLI uses inside its worker (default: ORCH_API_URL).")
    ] = None
