"""The CLI (imagegen.cli) in-process, on the SDK over httpx.MockTransport: where it finds its
API, what it prints, and the exit codes scripts rely on. tests/e2e/test_cli.py runs the console
script itself against the local stack."""

from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from imagegen import cli
from imagegen.client import Client, JobView
from tests.unit.fake_api import API_KEY, API_URL, IMAGE_BYTES, FakeApi
from tests.unit.test_client import Clock


class Run:
    """One CLI run: exit code, stdout, stderr, and the target the client was made for."""

    def __init__(self, fake: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fake, self.cwd, self.clock = fake, tmp_path / "work", Clock()
        self.cwd.mkdir()
        self.env: dict[str, str] = {"IMAGEGEN_API_URL": API_URL, "IMAGEGEN_API_KEY": API_KEY}
        self.targets: list[cli.Target] = []
        # Only the test's folders: not a local-stack.json a `make local` left in this checkout.
        monkeypatch.setattr(cli, "CHECKOUT", tmp_path / "checkout")

    def client(self, target: cli.Target) -> Client:
        self.targets.append(target)
        return Client(
            target.api_url,
            target.api_key,
            transport=self.fake.transport,
            sleep=self.clock.sleep,
            clock=self.clock,
        )

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(list(argv), env=self.env, cwd=self.cwd, client_factory=self.client, out=out, err=err)
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def fake() -> FakeApi:
    return FakeApi()


@pytest.fixture
def run(fake: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    return Run(fake, tmp_path, monkeypatch)


def one_line(text: str) -> str:
    assert text.count("\n") == 1 and "Traceback" not in text, text
    return text.strip()


# --- finding the API ----------------------------------------------------------------------
def test_flags_come_before_the_environment(run: Run) -> None:
    run.env["IMAGEGEN_API_URL"] = "https://elsewhere.example"
    code, _, _ = run("jobs", "list", "--api-url", API_URL, "--api-key", API_KEY)
    assert code == 0 and run.targets[0] == cli.Target(API_URL, API_KEY, "--api-url")


def test_flags_before_the_command_count_too(run: Run) -> None:
    run.env.clear()
    code, _, _ = run("--api-url", API_URL, "--api-key", API_KEY, "--json", "jobs", "list")
    assert code == 0 and run.targets[0].api_url == API_URL


def test_local_stack_json_is_found_in_a_parent_folder(run: Run) -> None:
    run.env.clear()
    (run.cwd.parent / "local-stack.json").write_text(json.dumps({"ApiUrl": API_URL, "ApiKey": API_KEY}))
    nested = run.cwd / "a" / "b"
    nested.mkdir(parents=True)
    run.cwd = nested

    code, _, _ = run("jobs", "list")

    assert code == 0 and run.targets[0] == cli.Target(
        API_URL, API_KEY, str(run.cwd.parents[2] / "local-stack.json")
    )


def test_local_stack_json_comes_before_cdk_outputs_and_the_env_key_before_its_key(run: Run) -> None:
    run.env = {"IMAGEGEN_API_KEY": "igk_mine"}
    (run.cwd / "local-stack.json").write_text(json.dumps({"ApiUrl": API_URL, "ApiKey": "igk_local"}))
    (run.cwd / "cdk-outputs.json").write_text(json.dumps({"imagegen": {"ApiUrl": "https://cloud.example"}}))
    run("jobs", "list")
    assert (run.targets[0].api_url, run.targets[0].api_key) == (API_URL, "igk_mine")


def test_a_url_of_ones_own_never_gets_local_stack_jsons_key(run: Run) -> None:
    run.env = {}
    (run.cwd / "local-stack.json").write_text(json.dumps({"ApiUrl": API_URL, "ApiKey": API_KEY}))
    code, _, err = run("jobs", "list", "--api-url", "https://elsewhere.example")
    assert code == cli.USAGE and "no API key for https://elsewhere.example" in one_line(err)


def test_cdk_outputs_give_the_url_and_the_key_must_come_from_the_environment(run: Run) -> None:
    run.env = {}
    (run.cwd / "cdk-outputs.json").write_text(
        json.dumps(
            {"imagegen": {"ApiUrl": API_URL, "CreateApiKeyCommand": "python -m imagegen_infra.admin ..."}}
        )
    )
    code, out, err = run("jobs", "list")
    assert (code, out) == (cli.USAGE, "")
    assert "no API key for https://api.example/prod: pass --api-key or set IMAGEGEN_API_KEY" in one_line(err)

    run.env = {"IMAGEGEN_API_KEY": API_KEY}
    assert run("jobs", "list")[0] == 0 and run.targets[0].source.endswith("cdk-outputs.json")


def test_cdk_outputs_of_several_stages_need_a_choice(run: Run) -> None:
    run.env = {"IMAGEGEN_API_KEY": API_KEY}
    (run.cwd / "cdk-outputs.json").write_text(
        json.dumps({"imagegen": {"ApiUrl": API_URL}, "imagegen-dev": {"ApiUrl": "https://dev.example"}})
    )
    code, _, err = run("jobs", "list")
    assert code == cli.USAGE and "several stacks (imagegen, imagegen-dev)" in one_line(err)


def test_nothing_to_talk_to_says_how_to_get_one(run: Run) -> None:
    run.env = {}
    code, _, err = run("jobs", "list")
    assert code == cli.USAGE and "imagegen local" in one_line(err) and run.targets == []


# --- commands -----------------------------------------------------------------------------
def test_generate_waits_with_a_line_per_change_and_prints_the_files(run: Run, fake: FakeApi) -> None:
    # the first step is the read that follows the submission
    fake.plans["job-001"] = [("QUEUED", 0), ("PROCESSING", 0), ("PROCESSING", 50), ("COMPLETED", 100)]
    out_dir = run.cwd / "images"

    code, out, err = run(
        "generate", "a fox reading", "--quality", "high", "--aspect", "3:2", "--format", "png", "-n", "2",
        "--wait", "--out", str(out_dir),
    )  # fmt: skip

    assert code == 0, err
    assert json.loads(fake.requests[0].content) == {
        "prompt": "a fox reading",
        "model": "gpt-image-1.5",
        "gptImageParams": {
            "quality": "high",
            "aspect_ratio": "3:2",
            "output_format": "png",
            "number_of_images": 2,
        },
    }
    assert out.splitlines() == [str(out_dir / "job-001-0.png"), str(out_dir / "job-001-1.png")]
    assert (out_dir / "job-001-1.png").read_bytes() == IMAGE_BYTES
    assert err.splitlines() == [
        "job job-001: QUEUED 0%",
        "job job-001: PROCESSING 0%",
        "job job-001: PROCESSING 50%",
        "job job-001: COMPLETED 100%",
    ]


def test_generate_without_wait_prints_the_job_id(run: Run, fake: FakeApi) -> None:
    code, out, _ = run("generate", "a fox")
    assert code == 0 and out.splitlines()[0] == "job-001"
    assert [r.url.path for r in fake.requests] == ["/prod/v2/images/generate", "/prod/v2/jobs/job-001"]


def test_generate_json_is_one_document_with_the_job_and_its_files(run: Run, fake: FakeApi) -> None:
    fake.plans["job-001"] = [("COMPLETED", 100)]
    code, out, _ = run("generate", "a fox", "--out", str(run.cwd / "o"), "--json")
    document = json.loads(out)
    assert code == 0 and document["job"]["status"] == "COMPLETED"
    assert document["files"] == [str(run.cwd / "o" / "job-001-0.webp")]
    assert JobView.model_validate(document["job"]).id == "job-001"


def test_a_bar_on_a_terminal() -> None:
    stream = io.StringIO()
    progress = cli.Progress(stream, tty=True)
    job = JobView.model_validate({"id": "0123456789", "status": "PROCESSING", "progress": 50})
    progress(job)
    progress.end()
    assert stream.getvalue() == "\r01234567 [" + "#" * 15 + "-" * 15 + "]  50% PROCESSING\n"


def test_a_failed_job_exits_4_with_its_reason(run: Run, fake: FakeApi) -> None:
    fake.plans["job-001"] = [("FAILED", 0)]
    code, out, _ = run("generate", "a fox", "--wait")
    assert code == cli.JOB_FAILED and "job-001 FAILED: the provider refused the prompt" in out


def test_a_wait_that_runs_out_exits_3_and_says_how_to_wait_again(run: Run, fake: FakeApi) -> None:
    job = fake.add("PROCESSING")
    code, _, err = run("jobs", "wait", job.job_id, "--timeout", "2")
    assert code == cli.TIMEOUT
    assert err.splitlines()[-1] == (
        f"imagegen: timeout: job {job.job_id} did not finish within 2 s (last status PROCESSING); "
        f"`imagegen jobs wait {job.job_id}` waits again"
    )


def test_jobs_wait_downloads_only_with_out(run: Run, fake: FakeApi) -> None:
    job = fake.add("COMPLETED")
    code, out, _ = run("jobs", "wait", job.job_id)
    assert (code, out.strip()) == (0, f"job {job.job_id} COMPLETED") and list(run.cwd.iterdir()) == []


def test_jobs_list_shows_at_most_limit_and_json_is_one_document(run: Run, fake: FakeApi) -> None:
    for _ in range(4):
        fake.add("COMPLETED")

    code, out, _ = run("jobs", "list", "--limit", "3")
    json_code, json_out, _ = run("jobs", "list", "--json", "--status", "COMPLETED", "--all")

    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["job-004", "job-003", "job-002"]
    assert "COMPLETED" in out.splitlines()[0] and "a lighthouse" in out.splitlines()[0]
    assert json_code == 0 and [j["id"] for j in json.loads(json_out)["jobs"]] == [
        "job-004",
        "job-003",
        "job-002",
        "job-001",
    ]


def test_jobs_show_and_cancel(run: Run, fake: FakeApi) -> None:
    job = fake.add("PROCESSING")
    before = fake.view(job.job_id)
    show_code, shown, _ = run("jobs", "show", job.job_id, "--json")
    cancel_code, canceled, _ = run("jobs", "cancel", job.job_id)
    assert (show_code, json.loads(shown)) == (0, before)
    assert (cancel_code, canceled.strip()) == (0, f"job {job.job_id} FAILED")


def test_an_api_error_is_one_line_with_its_code_and_exit_1(run: Run, fake: FakeApi) -> None:
    job = fake.add("COMPLETED")
    code, out, err = run("jobs", "cancel", job.job_id)
    assert (code, out) == (cli.API_ERROR, "")
    assert one_line(err) == f"imagegen: job_not_cancelable: job {job.job_id} has already ended (HTTP 409)"


def test_an_api_error_with_json_is_the_apis_shape(run: Run) -> None:
    code, _, err = run("jobs", "show", "nope", "--json")
    assert code == cli.API_ERROR
    assert json.loads(one_line(err)) == {
        "error": {"code": "not_found", "message": "job nope not found", "status": 404, "details": []}
    }


def test_an_invalid_request_lists_its_fields_on_the_line(run: Run) -> None:
    code, _, err = run("generate", "   ")
    assert code == cli.API_ERROR
    assert one_line(err) == (
        "imagegen: invalid_request: the request body is invalid (HTTP 400) — "
        "prompt: Value error, prompt must not be blank"
    )


def test_an_unreachable_api_exits_5_naming_where_its_url_came_from(run: Run, fake: FakeApi) -> None:
    run.env = {}
    (run.cwd / "local-stack.json").write_text(json.dumps({"ApiUrl": API_URL, "ApiKey": API_KEY}))

    def refuse(request: Any) -> Any:
        import httpx

        raise httpx.ConnectError("refused", request=request)

    fake.handle = refuse  # type: ignore[method-assign]
    code, _, err = run("jobs", "show", "x")
    assert code == cli.UNREACHABLE and one_line(err).endswith(f"(from {run.cwd / 'local-stack.json'})")


def test_edit_takes_urls_and_refuses_local_files_clearly(run: Run, fake: FakeApi) -> None:
    code, _, _ = run("edit", "https://img.example/a.png", "https://img.example/b.png", "make it night")
    local_code, _, err = run("edit", "fox.png", "make it night")

    assert code == 0 and json.loads(fake.requests[0].content)["gptImageParams"]["input_images"] == [
        "https://img.example/a.png",
        "https://img.example/b.png",
    ]
    assert local_code == cli.USAGE and "fox.png: edits take http(s) image URLs" in one_line(err)


def test_webhook_secret(run: Run, fake: FakeApi) -> None:
    assert run("webhook-secret")[1].strip() == fake.secret
    assert json.loads(run("webhook-secret", "--json")[1]) == {"secret": fake.secret}


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "a fox", "--quality", "ultra"],
        ["generate", "a fox", "-n", "0"],
        ["jobs"],
        ["jobs", "list", "--status", "DONE"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2_with_one_line(
    run: Run, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        run(*argv)
    assert exited.value.code == cli.USAGE
    assert one_line(capsys.readouterr().err).startswith("imagegen: usage error: ")
    assert run.targets == []


def test_the_help_documents_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    shown = capsys.readouterr().out
    assert all(f"  {code:<4}{meaning}" in shown for code, meaning in cli.EXIT_CODES.items())


def test_the_readmes_cli_lines_parse() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("\n## CLI and SDK\n")
    section = readme[start : readme.index("\n## ", start + 1)]
    lines = [
        line.split("|")[0]
        for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
        for line in block.splitlines()
        if line.startswith("imagegen ")
    ]
    assert len(lines) >= 5
    for line in lines:
        args = cli.build_parser().parse_args(shlex.split(line, comments=True)[1:])
        assert args.command, line
