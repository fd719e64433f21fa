"""Which directory each Lambda layer ships: the pre-built one, or a placeholder that says it was not built.

`cdk synth` and the tests work offline and without minutes of pip downloads: when
`python -m layers.build` has not built a layer (or built it from other requirements), the app
ships a placeholder directory holding only a README and warns. A function deployed with a
placeholder fails at its first import, so deploys pass `-c require_layers=true`, which turns
the warning into an error (see `LambdaRuntime`).

Plain Python (no aws_cdk): the tests check the choice without a synth.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from layers import build

LayerState = Literal["built", "missing", "stale"]
PLACEHOLDER_ROOT_NAME = "codegen-orch-layers-NOT-BUILT"
NOT_BUILT_WARNING = "codegen-orch:layer-not-built"
"""The id of the synth warning on a placeholder (or stale) layer."""
PLACEHOLDER_README = "README.md"


@dataclass(frozen=True)
class LayerAsset:
    name: str
    path: Path
    state: LayerState

    @property
    def usable(self) -> bool:
        return self.state == "built"

    @property
    def problem(self) -> str | None:
        if self.state == "missing":
            return (
                f"layer {self.name!r} is not built: run `python -m layers.build {self.name}` before deploying"
            )
        if self.state == "stale":
            return (
                f"layer {self.name!r} was built from other requirements than layers/{self.name}.txt now "
                f"holds: run `python -m layers.build {self.name}` before deploying"
            )
        return None


def resolve_layers_dir(layers_dir: str | Path) -> Path:
    path = Path(layers_dir).expanduser()
    return path if path.is_absolute() else build.REPO_ROOT / path


def layer_asset(name: str, layers_dir: Path) -> LayerAsset:
    """The directory to ship for layer `name` (its root, the one holding `python/`)."""
    built = layers_dir / name
    if (built / "python").is_dir():
        manifest = build.read_manifest(layers_dir, name) or {}
        current = manifest.get("requirements_sha256") == build.requirements_digest(name)
        return LayerAsset(name, built, "built" if current else "stale")
    return LayerAsset(name, placeholder_dir(name), "missing")


def placeholder_text(name: str) -> str:
    return (
        f"# Lambda layer `{name}` was NOT BUILT\n\n"
        f"This placeholder stands in for `layers/build/{name}/` so that `cdk synth` works offline.\n"
        "A function deployed with it fails at its first import. Build the layers, then deploy:\n\n"
        "    python -m layers.build\n"
        "    npx cdk deploy -c require_layers=true\n"
    )


def placeholder_dir(name: str) -> Path:
    """A directory holding only the README, created on first use; same content, same asset hash."""
    text = placeholder_text(name)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    directory = Path(tempfile.gettempdir()) / PLACEHOLDER_ROOT_NAME / f"{name}-{digest}"
    readme = directory / PLACEHOLDER_README
    if not readme.is_file() or readme.read_text(encoding="utf-8") != text:
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".readme-")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, readme)
    return directory
