"""Lambda code without Docker: the functions folder as is, dependencies in one cached layer."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from imagegen_infra import blueprint as bp
from imagegen_infra import bundling
from tests.infra.cfn import only
from tests.infra.conftest import STACK_ID

pytestmark = pytest.mark.infra


def test_dependencies_are_pyprojects() -> None:
    pyproject = tomllib.loads((bundling.REPO_ROOT / "pyproject.toml").read_text())
    assert bundling.dependencies() == pyproject["project"]["dependencies"]


def test_the_layer_hash_follows_its_inputs() -> None:
    requirements = ["httpx>=0.27", "pydantic>=2.7"]
    digest = bundling.inputs_hash(requirements, "3.14")
    assert digest == bundling.inputs_hash(list(reversed(requirements)), "3.14")
    assert digest != bundling.inputs_hash([*requirements, "boto3"], "3.14")
    assert digest != bundling.inputs_hash(requirements, "3.13")


def test_a_built_layer_is_reused_without_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layer_dir = tmp_path / "layer"
    (layer_dir / "python").mkdir(parents=True)
    digest = bundling.inputs_hash(["httpx"], "3.14")
    (tmp_path / "layer.inputs-sha256").write_text(digest + "\n")

    def no_pip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pip ran although the layer is up to date")

    monkeypatch.setattr(bundling.subprocess, "run", no_pip)
    layer = bundling.dependency_layer("3.14", ["httpx"], layer_dir=layer_dir)
    assert (layer.path, layer.inputs_hash) == (layer_dir, digest)


def test_a_failed_build_says_why_and_keeps_no_half_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Failed:
        returncode, stderr = 1, "ERROR: No matching distribution found for nothing-here"

    monkeypatch.setattr(bundling.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(RuntimeError, match="No matching distribution"):
        bundling.dependency_layer("3.14", ["nothing-here"], layer_dir=tmp_path / "layer")
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
