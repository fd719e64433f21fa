"""The env contract: `orchestrator.env.json` at a project's root says how to run the service and what
it needs. The scaffolder's default template ships one and the deploy's env analyzer reads it with
`load_env_contract`, so it lives here, below both (`functions.scaffolder.render.read_env_contract`
gives a plain dict). The format is described in `functions/scaffolder/render.py` and in the rendered
project's README."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CONTRACT_FILE = "orchestrator.env.json"
MAX_CONTRACT_BYTES = 256 * 1024

EnvName = Annotated[
    str,
    Field(pattern=r"^[A-Z_][A-Z0-9_]*$", max_length=128, description="An environment variable name."),
]


class EnvContractError(ValueError):
    """The contract file is missing, unreadable or invalid; the message names the problem."""


class EnvContractMissingError(EnvContractError):
    """The repository has no contract file (a template that does not ship one)."""


class _Strict(BaseModel):
    # Unknown keys are refused: a misspelt "secret" must not silently mean "no secrets".
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvVariable(_Strict):
    name: EnvName
    required: Annotated[bool, Field(description="The deploy must provide a value (no usable default).")] = (
        False
    )
    description: Annotated[str, Field(max_length=1000)] = ""
    default: Annotated[
        str | int | float | bool | None,
        Field(description="The value the service uses when the variable is unset; None when it has none."),
    ] = None


class EnvSecret(_Strict):
    name: EnvName
    required: Annotated[bool, Field(description="The deploy waits for this secret before it runs.")] = True
    description: Annotated[str, Field(max_length=1000)] = ""


class EnvContract(_Strict):
    """What a deploy needs to know about a service: how to start and test it, the port and health
    path, and the variables and secrets it reads."""

    schema_version: Annotated[Literal[1], Field(description="Version of this format.")] = 1
    port_variable: Annotated[EnvName, Field(description="The variable that sets the listening port.")]
    default_port: Annotated[int, Field(ge=1, le=65535, description="The port when that variable is unset.")]
    health_path: Annotated[
        str, Field(pattern=r"^/\S*$", max_length=1000, description="Answers 200 when the service is healthy.")
    ]
    run: Annotated[
        str, Field(min_length=1, max_length=1000, description="Starts the service, from the root.")
    ]
    test: Annotated[str, Field(min_length=1, max_length=1000, description="Runs the tests, from the root.")]
    variables: Annotated[list[EnvVariable], Field(max_length=200)] = []
    secrets: Annotated[list[EnvSecret], Field(max_length=200)] = []

    @model_validator(mode="after")
    def _names_are_unique(self) -> EnvContract:
        seen: set[str] = set()
        for name in [v.name for v in self.variables] + [s.name for s in self.secrets]:
            if name in seen:
                raise ValueError(f"{name} is declared more than once across variables and secrets")
            seen.add(name)
        return self

    @property
    def required_secrets(self) -> list[str]:
        return [secret.name for secret in self.secrets if secret.required]

    @property
    def required_variables(self) -> list[str]:
        return [variable.name for variable in self.variables if variable.required]


def parse_env_contract(raw: str | bytes, source: str = CONTRACT_FILE) -> EnvContract:
    """Parse and validate contract text; `source` names it in error messages."""
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise EnvContractError(f"{source} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise EnvContractError(f"{source} must hold a JSON object, not {type(data).__name__}")
    try:
        return EnvContract.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or '(root)'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise EnvContractError(f"{source} is invalid: {problems}") from None


def load_env_contract(repo_dir: Path) -> EnvContract:
    """Read `orchestrator.env.json` from a project checkout. Raises EnvContractMissingError when the
    file is absent and EnvContractError (a ValueError) when it is unreadable or invalid."""
    path = Path(repo_dir) / CONTRACT_FILE
    if not path.is_file():
        raise EnvContractMissingError(f"{CONTRACT_FILE} not found in {repo_dir}")
    if path.stat().st_size > MAX_CONTRACT_BYTES:
        raise EnvContractError(f"{CONTRACT_FILE} is larger than {MAX_CONTRACT_BYTES} bytes")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise EnvContractError(f"{CONTRACT_FILE} cannot be read: {error}") from None
    return parse_env_contract(raw, source=CONTRACT_FILE)
