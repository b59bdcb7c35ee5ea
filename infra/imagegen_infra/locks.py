"""Pinned, hashed dependencies: what `make lock` writes, and what setup and the layer install.

    locks/dev.txt    the development environment (Python 3.11+, any OS): pyproject's
                     dependencies and its `dev` extra. `make setup` installs it with
                     `pip install --require-hashes`, then the project itself with `--no-deps`.
    locks/layer.txt  the functions' dependency layer: `[project].dependencies` for Lambda's
                     runtime (blueprint.LAMBDA_RUNTIME) on Linux arm64, wheels only.
                     infra/imagegen_infra/bundling.py installs it with `--require-hashes`.

Two synths a month apart deploy the same code: nothing is taken from what the registry serves
that day. `make lock` (this module) re-resolves both after pyproject.toml changes, keeping
every pin that is still allowed; `make lock UPGRADE=1` takes the newest versions allowed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from imagegen_infra.blueprint import LAMBDA_RUNTIME

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = REPO_ROOT / "pyproject.toml"
LOCKS_DIR = REPO_ROOT / "locks"
DEV_LOCK = LOCKS_DIR / "dev.txt"
LAYER_LOCK = LOCKS_DIR / "layer.txt"
DEV_PYTHON = "3.11"  # the oldest Python the project supports (pyproject's requires-python)
LAYER_PYTHON = LAMBDA_RUNTIME.removeprefix("python")
# uv's name for the newest platform tag bundling.PLATFORMS lets pip install.
LAYER_PLATFORM = "aarch64-manylinux_2_28"
REFRESH_COMMAND = "make lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def compile_commands(uv: str, upgrade: bool = False) -> list[list[str]]:
    """The uv commands that write both locks."""
    common = [
        uv,
        "pip",
        "compile",
        str(PYPROJECT.relative_to(REPO_ROOT)),
        "--generate-hashes",
        "--quiet",
        "--custom-compile-command",
        REFRESH_COMMAND,
        *(["--upgrade"] if upgrade else []),
    ]
    return [
        [
            *common,
            "--extra",
            "dev",
            "--universal",
            "--python-version",
            DEV_PYTHON,
            "--output-file",
            str(DEV_LOCK.relative_to(REPO_ROOT)),
        ],
        [
            *common,
            "--python-version",
            LAYER_PYTHON,
            "--python-platform",
            LAYER_PLATFORM,
            "--only-binary",
            ":all:",
            "--output-file",
            str(LAYER_LOCK.relative_to(REPO_ROOT)),
        ],
    ]


def pins(lock: Path) -> dict[str, set[str]]:
    """Normalized package name -> the versions the lock pins (several, under markers)."""
    found: dict[str, set[str]] = {}
    for name, version in _PIN.findall(lock.read_text()):
        found.setdefault(_normalize(name), set()).add(version)
    return found


def unsatisfied(lock: Path, requirements: Iterable[str]) -> list[str]:
    """The requirements no pin of the lock satisfies: not empty means run `make lock`."""
    from packaging.requirements import Requirement

    pinned = pins(lock)
    missing = []
    for text in requirements:
        requirement = Requirement(text)
        versions = pinned.get(_normalize(requirement.name), set())
        if not any(requirement.specifier.contains(version, prereleases=True) for version in versions):
            missing.append(text)
    return missing


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imagegen_infra.locks", description=__doc__)
    parser.add_argument("--uv", default="uv", help="the uv executable (default: %(default)s)")
    parser.add_argument("--upgrade", action="store_true", help="take the newest versions allowed")
    args = parser.parse_args(argv)
    for command in compile_commands(args.uv, args.upgrade):
        print(" ".join(command), file=sys.stderr)
        subprocess.run(command, cwd=REPO_ROOT, check=True)  # noqa: S603 (our own uv command line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
