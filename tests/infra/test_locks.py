"""Reproducible installs: the dev environment and the Lambda layer come from hashed locks that
`make lock` writes, and the locks are current with pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from imagegen_infra import blueprint as bp
from imagegen_infra import bundling, locks

pytestmark = pytest.mark.infra

PYPROJECT = tomllib.loads(locks.PYPROJECT.read_text())
MAKEFILE = (locks.REPO_ROOT / "Makefile").read_text()


def _entries(lock: Path) -> list[str]:
    """One block per pinned package: `name==version \\ --hash=... # via ...`."""
    return [block for block in re.split(r"\n(?=\S)", lock.read_text()) if "==" in block.split("\n")[0]]


@pytest.mark.parametrize("lock", [locks.DEV_LOCK, locks.LAYER_LOCK], ids=lambda path: path.name)
def test_every_pin_is_exact_and_hashed(lock: Path) -> None:
    entries = _entries(lock)
    assert len(entries) >= 15
    for entry in entries:
        assert re.match(r"^[A-Za-z0-9._-]+==\S+", entry), entry
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), entry
    assert "make lock" in lock.read_text().split("\n", 3)[1]  # the header says how to refresh it


def test_the_layer_lock_is_current_with_the_functions_dependencies() -> None:
    assert not locks.unsatisfied(locks.LAYER_LOCK, PYPROJECT["project"]["dependencies"]), (
        "locks/layer.txt is behind pyproject.toml: run `make lock`"
    )


def test_the_dev_lock_is_current_with_the_dependencies_and_the_dev_extra() -> None:
    wanted = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["dev"]
    assert not locks.unsatisfied(locks.DEV_LOCK, wanted), (
        "locks/dev.txt is behind pyproject.toml: run `make lock`"
    )
    assert locks.pins(locks.DEV_LOCK)["moto"] == {"5.2.5"}


def test_the_layer_lock_is_for_lambdas_python_and_platform() -> None:
    [_, layer_command] = locks.compile_commands("uv")
    assert layer_command[layer_command.index("--python-version") + 1] == bp.LAMBDA_RUNTIME.removeprefix(
        "python"
    )
    platform = layer_command[layer_command.index("--python-platform") + 1]
    assert platform.startswith("aarch64-") and platform.split("-", 1)[1].replace("_", "") in {
        tag.split("_aarch64")[0].replace("_", "") for tag in bundling.PLATFORMS
    }
    assert "--only-binary" in layer_command and "--generate-hashes" in layer_command


def test_unsatisfied_names_what_the_lock_lacks(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("httpx==0.28.1 \\\n    --hash=sha256:aa\nnetworkx==3.6.1 ; python_version < '3.12'\n")
    assert locks.unsatisfied(lock, ["httpx>=0.27,<1", "networkx", "HTTPX"]) == []
    assert locks.unsatisfied(lock, ["httpx>=0.29", "hypothesis>=6"]) == ["httpx>=0.29", "hypothesis>=6"]


def test_setup_installs_the_lock_with_hashes_then_the_project_without_dependencies() -> None:
    recipe = MAKEFILE.split("$(VENV)/.installed: pyproject.toml locks/dev.txt\n", 1)[1].split("\n\n", 1)[0]
    install_lock = recipe.index("pip install --quiet --require-hashes -r locks/dev.txt")
    install_project = recipe.index("pip install --quiet --no-deps -e .")
    assert install_lock < install_project
    assert recipe.count("pip install") == 2  # nothing else, nothing unpinned
    assert "lock: " in MAKEFILE and "imagegen_infra.locks" in MAKEFILE
