"""The scaffolder's configuration block."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.service_client import ServiceApiSettings
from shared.settings import QueueSettings


class ScaffolderSettings(ServiceApiSettings, QueueSettings):
    template: Annotated[
        str | None, Field(description="Copier template path or git URL; default: the bundled template.")
    ] = None
    template_ref: Annotated[str | None, Field(description="Version (tag/commit) of a git template.")] = None
