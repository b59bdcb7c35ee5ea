"""End to end: the `imagegen` console script, run as pip installs it (the entry point
pyproject.toml declares), in its own process, against the session's local stack; its target
found the way a user's shell finds it (local-stack.json in the folder, or the environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imagegen_local.stack import REPO_ROOT, free_port

pytestmark = pytest.mark.e2e
ENTRY_POINT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]["imagegen"]


class Cli:
    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env = cwd, env

    def __call__(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # What the console script pip writes does: import the entry point, exit with its result.
        module, function = ENTRY_POINT.split(":")
        script = f"import sys; from {module} import {function}; sys.exit({function}())"
        return subprocess.run(
            [sys.executable, "-c", script, *argv],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
def cli(outputs: dict[str, str], tmp_path: Path) -> Cli:
    """A user's shell in a folder holding the stack's local-stack.json: no IMAGEGEN_* setting
    (the session exports the functions' environment), nothing on the command line."""
    (tmp_path / "local-stack.json").write_text(json.dumps(outputs))
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEGEN_")}
    env["PYTHONPATH"] = f"{REPO_ROOT / 'functions'}:{REPO_ROOT / 'infra'}"
    return Cli(tmp_path, env)


def one_line(text: str) -> str:
    assert text.count("\n") == 1 and "Traceback" not in text, text
    return text.strip()


def test_the_entry_point_is_the_cli() -> None:
    assert ENTRY_POINT == "imagegen.cli:main"


def test_generate_waits_and_saves_the_images_where_it_says(cli: Cli) -> None:
    done = cli(
        "generate", "a fox reading", "--quality", "low", "--aspect", "3:2", "--format", "png", "-n", "2",
        "--wait", "--out", "images",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    paths = [cli.cwd / line for line in done.stdout.splitlines()]
    assert [p.parent for p in paths] == [cli.cwd / "images"] * 2
    for path in paths:
        with Image.open(path) as image:
            assert (image.format, image.size) == ("PNG", (1536, 1024))
    progress = done.stderr.splitlines()  # not a terminal: one line per change
    assert progress[-1].endswith(": COMPLETED 100%") and all(line.startswith("job ") for line in progress)


def test_json_on_every_command_and_a_job_followed_by_id(cli: Cli, outputs: dict[str, str]) -> None:
    submitted = cli("generate", "a lighthouse at dawn", "--json")
    job = json.loads(submitted.stdout)["job"]
    waited = cli("jobs", "wait", job["id"], "--out", "later", "--json")
    shown = cli("jobs", "show", job["id"], "--json")
    secret = cli("webhook-secret", "--json")

    assert submitted.returncode == waited.returncode == shown.returncode == secret.returncode == 0
    assert job["status"] in ("QUEUED", "PROCESSING", "COMPLETED") and job["prompt"] == "a lighthouse at dawn"
    document = json.loads(waited.stdout)
    assert document["job"]["status"] == "COMPLETED"
    assert [Path(f).name for f in document["files"]] == [f"{job['id']}-0.webp"]
    assert (cli.cwd / document["files"][0]).stat().st_size > 0
    # what `jobs show --json` prints is what the API answers, field for field
    answered = httpx.get(f"{outputs['ApiUrl']}/v2/jobs/{job['id']}", headers={"X-API-Key": outputs["ApiKey"]})
    view = json.loads(shown.stdout)
    assert {k: v for k, v in view.items() if k != "result"} == {
        k: v for k, v in answered.json().items() if k != "result"
    }
    assert json.loads(secret.stdout)["secret"].startswith("whsec_")


def test_the_environment_comes_before_local_stack_json(cli: Cli, outputs: dict[str, str]) -> None:
    cli.env.update(IMAGEGEN_API_URL=outputs["ApiUrl"], IMAGEGEN_API_KEY="igk_not_a_key")
    refused = cli("jobs", "show", "any")
    assert refused.returncode == 1
    assert one_line(refused.stderr) == "imagegen: unauthorized: Invalid API key (HTTP 401)"


def test_errors_are_one_line_with_exit_codes_scripts_can_rely_on(cli: Cli) -> None:
    missing = cli("jobs", "show", "no-such-job")
    usage = cli("generate", "a fox", "--aspect", "16:9")
    invalid = cli("generate", "x" * 2001)
    # a URL of its own: local-stack.json's key is never sent anywhere else
    keyless = cli("--api-url", f"http://127.0.0.1:{free_port()}", "jobs", "show", "x")
    nowhere = cli("--api-url", f"http://127.0.0.1:{free_port()}", "--api-key", "k", "jobs", "show", "x")

    assert (missing.returncode, one_line(missing.stderr)) == (
        1,
        "imagegen: not_found: job no-such-job not found (HTTP 404)",
    )
    assert usage.returncode == 2 and one_line(usage.stderr).startswith(
        "imagegen: usage error: argument --aspect"
    )
    assert invalid.returncode == 1 and "invalid_request" in one_line(invalid.stderr)
    assert keyless.returncode == 2 and "no API key for http://127.0.0.1:" in one_line(keyless.stderr)
    assert nowhere.returncode == 5 and one_line(nowhere.stderr).startswith(
        "imagegen: unreachable: cannot reach"
    )


def test_a_wait_that_runs_out_exits_3(cli: Cli, simulator: Any) -> None:
    simulator.config.latency = (3.0, 3.0)  # a render outlasts the wait below
    slow = cli("generate", "a slow fox", "--wait", "--timeout", "0.5", "--json")
    assert slow.returncode == 3 and slow.stdout == ""
    error = json.loads(slow.stderr.splitlines()[-1])["error"]
    assert error["code"] == "timeout" and "imagegen jobs wait" in error["message"]


def test_jobs_list_and_cancel(cli: Cli, api: httpx.Client) -> None:
    submitted = json.loads(cli("generate", "a kite", "--json").stdout)["job"]

    listed = cli("jobs", "list", "--json", "--limit", "100")
    canceled = cli("jobs", "cancel", submitted["id"], "--json")

    assert listed.returncode == 0 and submitted["id"] in [j["id"] for j in json.loads(listed.stdout)["jobs"]]
    if canceled.returncode == 0:  # it had not ended yet
        assert json.loads(canceled.stdout)["id"] == submitted["id"]
    else:  # it ended first: the API says so
        assert canceled.returncode == 1
        assert json.loads(one_line(canceled.stderr))["error"]["code"] == "job_not_cancelable"


def test_operators_create_keys_and_grant_credits_against_the_local_stack(
    cli: Cli, outputs: dict[str, str]
) -> None:
    created = cli("keys", "create", "--local", "--owner", "cli-operator", "--credits", "50")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    granted = cli("credits", "grant", "--local", "--owner", "cli-operator", "--credits", "25")
    listed = cli("keys", "list", "--local", "--owner", "cli-operator")
    audited = cli("credits", "audit", "--local")

    assert granted.returncode == 0, granted.stderr
    assert listed.returncode == 0 and "cli-operator" in listed.stdout and key not in listed.stdout
    assert audited.returncode == 0, audited.stdout + audited.stderr
    account = httpx.get(f"{outputs['ApiUrl']}/v2/account", headers={"X-API-Key": key}, timeout=10)
    assert account.status_code == 200 and account.json()["balance"] == 75
