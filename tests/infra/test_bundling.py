"""Lambda code without Docker: the functions folder as is, dependencies in one cached layer."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from imagegen_infra import blueprint as bp
from imagegen_infra import bundling, locks
from tests.infra.cfn import only
from tests.infra.conftest import STACK_ID

pytestmark = pytest.mark.infra


def test_dependencies_are_pyprojects() -> None:
    pyproject = tomllib.loads((bundling.REPO_ROOT / "pyproject.toml").read_text())
    assert bundling.dependencies() == pyproject["project"]["dependencies"]


def test_the_layer_hash_follows_its_inputs() -> None:
    lock = "httpx==0.28.1 --hash=sha256:aa\n"
    digest = bundling.inputs_hash(lock, "3.14")
    assert digest == bundling.inputs_hash(lock, "3.14")
    assert digest != bundling.inputs_hash(lock.replace("0.28.1", "0.28.2"), "3.14")
    assert digest != bundling.inputs_hash(lock, "3.13")


def _lock(tmp_path: Path, text: str = "httpx==0.28.1 \\\n    --hash=sha256:aa\n") -> Path:
    lock = tmp_path / "layer.txt"
    lock.write_text(text)
    return lock


def test_a_built_layer_is_reused_without_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layer_dir = tmp_path / "layer"
    (layer_dir / "python").mkdir(parents=True)
    lock = _lock(tmp_path)
    digest = bundling.inputs_hash(lock.read_text(), "3.14")
    (tmp_path / "layer.inputs-sha256").write_text(digest + "\n")

    def no_pip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pip ran although the layer is up to date")

    monkeypatch.setattr(bundling.subprocess, "run", no_pip)
    layer = bundling.dependency_layer("3.14", lock, layer_dir=layer_dir, requirements=["httpx>=0.27"])
    assert (layer.path, layer.inputs_hash) == (layer_dir, digest)


def test_the_layer_is_installed_from_the_lock_with_every_hash_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []

    class Built:
        returncode, stderr = 0, ""

    def pip(command: list[str], **kwargs: Any) -> Built:
        ran.append(command)
        Path(command[command.index("--target") + 1]).mkdir(parents=True)
        return Built()

    monkeypatch.setattr(bundling.subprocess, "run", pip)
    lock = _lock(tmp_path)
    bundling.dependency_layer("3.14", lock, layer_dir=tmp_path / "layer", requirements=["httpx"])
    [command] = ran
    assert "--require-hashes" in command and "--only-binary=:all:" in command
    assert command[command.index("--requirement") + 1] == str(lock)
    assert command[command.index("--python-version") + 1] == "3.14"
    assert not [arg for arg in command if arg.startswith(("httpx", "pydantic"))]  # nothing unpinned


def test_a_lock_behind_pyproject_stops_the_synth(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"does not satisfy \['httpx>=0.29'\]: run `make lock`"):
        bundling.dependency_layer("3.14", _lock(tmp_path), tmp_path / "layer", requirements=["httpx>=0.29"])
    with pytest.raises(RuntimeError, match=r"does not satisfy \['pydantic'\]"):
        bundling.dependency_layer("3.14", _lock(tmp_path), tmp_path / "layer", requirements=["pydantic"])


def test_a_failed_build_says_why_and_keeps_no_half_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Failed:
        returncode, stderr = 1, "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE"

    monkeypatch.setattr(bundling.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(RuntimeError, match="DO NOT MATCH THE HASHES"):
        bundling.dependency_layer("3.14", _lock(tmp_path), tmp_path / "layer", requirements=["httpx"])
    assert not (tmp_path / "layer").exists()
    assert not (tmp_path / "layer.inputs-sha256").exists()


def _staged_asset(assembly: Any, code: dict[str, Any]) -> Path:
    """Where synthesis staged the asset a template's Code/Content points at (<hash>.zip)."""
    asset_hash = code["S3Key"].removesuffix(".zip")
    manifest = json.loads((Path(assembly.directory) / f"{STACK_ID}.assets.json").read_text())
    return Path(assembly.directory) / manifest["files"][asset_hash]["source"]["path"]


def test_code_asset_is_the_functions_folder_without_caches(assembly: Any, stack_artifact: Any) -> None:
    code = _staged_asset(
        assembly,
        only(stack_artifact.template, "AWS::Lambda::Function", FunctionName=bp.API_FUNCTION.name)["Code"],
    )
    assert (code / "api" / "handler.py").is_file() and (code / "imagegen" / "settings.py").is_file()
    assert not list(code.rglob("__pycache__")) and not list(code.rglob("*.pyc"))


def test_layer_holds_linux_arm_wheels_for_the_runtime(assembly: Any, stack_artifact: Any) -> None:
    layer = _staged_asset(assembly, only(stack_artifact.template, "AWS::Lambda::LayerVersion")["Content"])
    version = bp.LAMBDA_RUNTIME.removeprefix("python").replace(".", "")
    assert list((layer / "python" / "pydantic_core").glob(f"*.cpython-{version}-aarch64-linux-gnu.so"))
    for package in ("aws_lambda_powertools", "httpx", "pydantic", "boto3"):
        assert (layer / "python" / package).is_dir(), package
    # Exactly the locked versions: each pin of the lock is the version installed.
    distributions = [
        info.name.removesuffix(".dist-info").rsplit("-", 1) for info in layer.glob("python/*.dist-info")
    ]
    installed = {locks._normalize(name): version for name, version in distributions}
    assert {name: {version} for name, version in installed.items()} == locks.pins(locks.LAYER_LOCK)
