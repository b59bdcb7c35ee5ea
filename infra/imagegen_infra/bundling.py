"""Lambda code without Docker: our code is the `functions/` folder as it is, and the
dependencies are wheels for Lambda's platform, installed by pip into one shared layer.

The layer holds exactly what locks/layer.txt pins, every wheel checked against its hash
(`--require-hashes`), so two synths a month apart deploy the same code (imagegen_infra.locks;
`make lock` refreshes the lock). pip downloads `--only-binary` wheels for linux/arm64 and the
runtime's Python, whatever machine synthesizes, so nothing is compiled here. The layer is
rebuilt only when its inputs change (the lock, the Python version, the platforms): their hash
is kept next to it in the git-ignored build/ folder, so synth after the first is offline and fast.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from imagegen_infra.locks import LAYER_LOCK, REFRESH_COMMAND, unsatisfied

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = REPO_ROOT / "functions"
LAYER_DIR = REPO_ROOT / "build" / "layer"
# Never shipped: caches, tests, packaging metadata.
CODE_EXCLUDES = ["**/__pycache__", "**/*.pyc", "**/tests", "*.egg-info", ".mypy_cache"]
# Lambda's Python 3.12+ runs on Amazon Linux 2023 (glibc 2.34): both wheel generations load there.
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")


@dataclass(frozen=True)
class Layer:
    path: Path  # holds python/, the layout Lambda puts on sys.path
    inputs_hash: str  # also the asset hash: CDK need not fingerprint thousands of files


def dependencies(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """What the functions import at run time: `[project].dependencies`, one list for all."""
    with pyproject.open("rb") as file:
        return list(tomllib.load(file)["project"]["dependencies"])


def _pip_command(lock: Path, python_version: str, target: Path) -> list[str]:
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        *platforms,
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        "--require-hashes",  # every wheel, dependencies included, pinned and checked
        "--target",
        str(target),
        "--requirement",
        str(lock),
    ]


def inputs_hash(lock_text: str, python_version: str) -> str:
    inputs = {"lock": lock_text, "python": python_version, "platforms": PLATFORMS}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def dependency_layer(
    python_version: str,
    lock: Path = LAYER_LOCK,
    layer_dir: Path = LAYER_DIR,
    requirements: list[str] | None = None,
) -> Layer:
    """The layer folder for this lock, built by pip if its marker is missing or stale. A lock
    that does not satisfy the requirements (pyproject's dependencies) stops the synth: deploying
    it would ship other versions than the code asks for."""
    stale = unsatisfied(lock, dependencies() if requirements is None else requirements)
    if stale:
        raise RuntimeError(f"{lock.name} does not satisfy {stale}: run `{REFRESH_COMMAND}`")
    digest = inputs_hash(lock.read_text(), python_version)
    marker = layer_dir.with_name(layer_dir.name + ".inputs-sha256")
    if marker.is_file() and marker.read_text().strip() == digest and (layer_dir / "python").is_dir():
        return Layer(layer_dir, digest)

    # Build beside the old layer and swap, so an interrupted build never leaves half a layer.
    staging = layer_dir.with_name(layer_dir.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    result = subprocess.run(  # noqa: S603 (our own pip command line)
        _pip_command(lock, python_version, staging / "python"),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(
            "could not build the dependency layer: pip needs PyPI the first time (the result is "
            f"cached in {layer_dir}):\n{result.stderr.strip()}"
        )
    marker.unlink(missing_ok=True)
    shutil.rmtree(layer_dir, ignore_errors=True)
    staging.rename(layer_dir)
    marker.write_text(digest + "\n")
    return Layer(layer_dir, digest)
