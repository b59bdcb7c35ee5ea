"""`imagegen`: the command line of an imagegen deployment, on the SDK (imagegen.client).

    imagegen generate "a fox reading" --quality high --aspect 3:2 --format png -n 2 --wait --out out
    imagegen edit https://example.com/fox.png "make it night"
    imagegen jobs list|show|cancel|wait ...
    imagegen local              # the local stack, as `make local`
    imagegen webhook-secret [--rotate]

Its target, without flags: --api-url/--api-key, else IMAGEGEN_API_URL/IMAGEGEN_API_KEY, else
local-stack.json (written by `make local`: URL and key), else cdk-outputs.json (written by
`cdk deploy --outputs-file`: the URL; the key must come from the flag or the environment). Each
file is looked for in the working directory and its parents, then at the root of this checkout.

Output: results on stdout (with --json, one JSON document), progress on stderr (a bar on a
terminal, one line per change otherwise), errors as one line on stderr (--json: the API's
error shape, one line). Exit codes, for scripts: see EXIT_CODES.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any, NoReturn, get_args

from imagegen.models import AspectRatio, Background, InputFidelity, JobStatus, OutputFormat, Quality

OK, API_ERROR, USAGE, TIMEOUT, JOB_FAILED, UNREACHABLE, INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
EXIT_CODES = {
    OK: "success",
    API_ERROR: "the API answered with an error (the line names its code)",
    USAGE: "bad arguments, or no API to talk to",
    TIMEOUT: "a wait ran out of time (the job goes on: `imagegen jobs wait ID`)",
    JOB_FAILED: "the job ended FAILED (it was refunded)",
    UNREACHABLE: "the API could not be reached",
    INTERRUPTED: "interrupted (Ctrl-C)",
}
LOCAL_OUTPUTS = "local-stack.json"
CDK_OUTPUTS = "cdk-outputs.json"
CHECKOUT = Path(__file__).resolve().parents[2]  # functions/imagegen/cli.py -> the repository
DEFAULT_OUT = "out"
DEFAULT_TIMEOUT = 600.0
BAR_WIDTH = 30


class UsageError(Exception):
    """Something the user has to change in the command or its setup (exit 2)."""


# --- finding the API ----------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    api_url: str
    api_key: str
    source: str  # where the URL came from: said when the API cannot be reached


def _find(name: str, cwd: Path) -> Path | None:
    for folder in (cwd, *cwd.parents, CHECKOUT):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a JSON object")
    return data


def discover_target(api_url: str | None, api_key: str | None, env: Mapping[str, str], cwd: Path) -> Target:
    """The API to talk to and the key to use (the module docstring gives the order)."""
    key = api_key or env.get("IMAGEGEN_API_KEY") or None
    url, source = api_url or env.get("IMAGEGEN_API_URL"), "--api-url" if api_url else "IMAGEGEN_API_URL"
    if not url and (local := _find(LOCAL_OUTPUTS, cwd)):
        outputs = _read_json(local)
        url, source = outputs.get("ApiUrl"), str(local)
        key = key or outputs.get("ApiKey")
    if not url and (deployed := _find(CDK_OUTPUTS, cwd)):
        stacks = {
            name: o for name, o in _read_json(deployed).items() if isinstance(o, dict) and "ApiUrl" in o
        }
        if len(stacks) > 1:
            raise UsageError(
                f"{deployed} holds several stacks ({', '.join(sorted(stacks))}): choose one with --api-url"
            )
        if stacks:
            url, source = next(iter(stacks.values()))["ApiUrl"], str(deployed)
    if not url:
        raise UsageError(
            "no API to talk to: pass --api-url or set IMAGEGEN_API_URL, or start one with "
            f"`imagegen local` (it writes {LOCAL_OUTPUTS})"
        )
    if not key:
        raise UsageError(
            f"no API key for {url}: pass --api-key or set IMAGEGEN_API_KEY "
            "(the stack output CreateApiKeyCommand says how to create one)"
        )
    return Target(str(url), str(key), source)


# --- output -------------------------------------------------------------------------------
class Progress:
    """A job's progress on stderr: a bar redrawn in place on a terminal, otherwise one line
    per change (logs and pipes keep every step)."""

    def __init__(self, stream: IO[str], tty: bool) -> None:
        self.stream = stream
        self.tty = tty
        self.drawn = False

    def __call__(self, job: Any) -> None:
        if self.tty:
            filled = BAR_WIDTH * job.progress // 100
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            self.stream.write(f"\r{job.id[:8]} [{bar}] {job.progress:3d}% {job.status.value:<10}")
            self.drawn = True
        else:
            self.stream.write(f"job {job.id}: {job.status.value} {job.progress}%\n")
        self.stream.flush()

    def end(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def _summary(job: Any) -> str:
    prompt = (job.prompt or "").replace("\n", " ")
    prompt = prompt if len(prompt) <= 50 else prompt[:49] + "…"
    created = job.createdAt.strftime("%Y-%m-%d %H:%M:%S") if job.createdAt else "-"
    return f"{job.id}  {job.status.value:<10} {job.progress:3d}%  {created}  {prompt}"


def _details(job: Any) -> list[str]:
    lines = [
        f"job        {job.id}",
        f"status     {job.status.value} ({job.progress}%)",
        f"prompt     {job.prompt}",
        f"credits    {job.creditCost}",
        f"created    {job.createdAt}",
    ]
    if job.completedAt:
        lines.append(f"completed  {job.completedAt}")
    if job.gptImageParams:
        params = job.gptImageParams
        lines.append(
            f"params     {params.quality}, {params.aspect_ratio}, {params.output_format}, "
            f"{params.number_of_images} image(s)"
        )
    if job.error:
        lines.append(f"error      {job.error}")
    lines += [f"image      {url}" for url in job.images]
    return lines


# --- commands -----------------------------------------------------------------------------
@dataclass
class Context:
    args: argparse.Namespace
    client: Any  # imagegen.client.Client
    out: IO[str]
    err: IO[str]

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def emit(self, data: Any, lines: Sequence[str]) -> None:
        if self.json:
            self.out.write(json.dumps(_dump(data), ensure_ascii=False) + "\n")
        else:
            self.out.writelines(line + "\n" for line in lines)
        self.out.flush()

    def progress(self) -> Progress:
        return Progress(self.err, self.err.isatty())


def _params(args: argparse.Namespace) -> dict[str, Any]:
    chosen = {
        "quality": args.quality,
        "aspect_ratio": args.aspect,
        "output_format": args.format,
        "background": args.background,
        "input_fidelity": args.fidelity,
        "number_of_images": args.n,
    }
    return {name: value for name, value in chosen.items() if value is not None}


def _finish(ctx: Context, job: Any, out_dir: str | None) -> int:
    """Wait for the job with progress, download into out_dir (if any), report."""
    progress = ctx.progress()
    progress(job)
    try:
        job = ctx.client.wait(job, ctx.args.timeout, on_update=progress)
    finally:
        progress.end()
    files = ctx.client.download(job, out_dir) if out_dir and job.status is JobStatus.COMPLETED else []
    data = {"job": _dump(job), "files": [str(p) for p in files]}
    if job.status is JobStatus.FAILED:
        ctx.emit(data, [f"job {job.id} FAILED: {job.error or 'no reason given'} (not charged)"])
        return JOB_FAILED
    ctx.emit(data, [str(p) for p in files] or [f"job {job.id} COMPLETED"])
    return OK


def _submit(ctx: Context, job: Any) -> int:
    args = ctx.args
    if args.wait or args.out:
        return _finish(ctx, job, args.out or DEFAULT_OUT)
    ctx.emit(
        {"job": _dump(job), "files": []},
        [job.id, f"(queued: `imagegen jobs wait {job.id} --out {DEFAULT_OUT}` fetches the images)"],
    )
    return OK


def cmd_generate(ctx: Context) -> int:
    args = ctx.args
    job = ctx.client.generate(
        args.prompt,
        webhook_url=args.webhook_url,
        webhook_events=args.webhook_event,
        **_params(args),
    )
    return _submit(ctx, job)


def cmd_edit(ctx: Context) -> int:
    args = ctx.args
    local = [image for image in args.images if not image.lower().startswith(("http://", "https://"))]
    if local:
        raise UsageError(
            f"{local[0]}: edits take http(s) image URLs; to edit a local file, upload it under edits/ "
            "in the uploads bucket (README: S3-triggered edits)"
        )
    job = ctx.client.edit(args.images, args.prompt, **_params(args))
    return _submit(ctx, job)


def cmd_jobs_list(ctx: Context) -> int:
    args = ctx.args
    jobs = ctx.client.list(status=args.status, limit=min(args.limit, 100))
    shown = list(jobs if args.all else islice(jobs, args.limit))
    ctx.emit({"jobs": [_dump(j) for j in shown]}, [_summary(j) for j in shown] or ["no jobs"])
    return OK


def cmd_jobs_show(ctx: Context) -> int:
    job = ctx.client.get(ctx.args.job_id)
    ctx.emit(job, _details(job))
    return OK


def cmd_jobs_cancel(ctx: Context) -> int:
    job = ctx.client.cancel(ctx.args.job_id)
    ctx.emit(job, [f"job {job.id} {job.status.value}"])
    return OK


def cmd_jobs_wait(ctx: Context) -> int:
    return _finish(ctx, ctx.client.get(ctx.args.job_id), ctx.args.out)


def cmd_webhook_secret(ctx: Context) -> int:
    secret = ctx.client.rotate_webhook_secret() if ctx.args.rotate else ctx.client.webhook_secret()
    ctx.emit({"secret": secret}, [secret])
    return OK


def cmd_local(args: argparse.Namespace) -> int:
    """What `make local` runs, in this process (it handles SIGINT/SIGTERM itself)."""
    try:
        from imagegen_local.__main__ import main as run_local_stack
    except ImportError as exc:
        raise UsageError(
            f"the local stack needs the development packages ({exc.name} is missing): run `make setup`"
        ) from None
    if args.port is not None:
        os.environ["IMAGEGEN_LOCAL_PORT"] = str(args.port)
    return run_local_stack()


# Operator commands: the account admin (python -m imagegen_infra.admin), by another name.
ADMIN_COMMANDS = {
    ("keys", "create"): "create-key",
    ("keys", "list"): "list-keys",
    ("keys", "disable"): "disable-key",
    ("credits", "grant"): "grant",
    ("credits", "audit"): "audit",
}


def cmd_admin(args: argparse.Namespace, env: Mapping[str, str], cwd: Path) -> int:
    """`imagegen keys|credits ...` runs the admin against the deployment's keys table: the one
    AWS credentials and AWS_ENDPOINT_URL point at, or, with --local, the running local stack."""
    try:
        from imagegen_infra import admin
        from imagegen_infra.blueprint import API_KEYS_TABLE
    except ImportError as exc:
        raise UsageError(
            f"the admin commands need the development packages ({exc.name}): run `make setup`"
        ) from None
    # --local may come anywhere after the action, where argparse hands everything on as `rest`.
    local = args.local or "--local" in args.rest
    rest = [arg for arg in args.rest if arg != "--local"]
    argv = [ADMIN_COMMANDS[(args.group, args.action)], *rest]
    if local:
        local = _find(LOCAL_OUTPUTS, cwd)
        if local is None:
            raise UsageError(f"--local: no {LOCAL_OUTPUTS} (start the local stack with `imagegen local`)")
        endpoint = _read_json(local).get("AwsEndpointUrl")
        # moto takes any credentials; the table is the local stack's (it has no ApiKeysTable output).
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": str(endpoint),
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
            }
        )
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        if "--table" not in rest:
            argv += ["--table", API_KEYS_TABLE.name]
    return int(admin.main(argv))


# --- the parser ---------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"imagegen: usage error: {message} (see `{self.prog} --help`)\n")


def _common(defaults: bool) -> _Parser:
    """Options every command takes, before or after its name. A subcommand's copy must not
    overwrite what was given before the name with its defaults: there they are SUPPRESS."""
    common = _Parser(add_help=False)
    default = None if defaults else argparse.SUPPRESS
    common.add_argument("--api-url", default=default, help="the API's base URL (env IMAGEGEN_API_URL)")
    common.add_argument("--api-key", default=default, help="the API key (env IMAGEGEN_API_KEY)")
    common.add_argument(
        "--json", action="store_true", default=False if defaults else argparse.SUPPRESS, help="JSON output"
    )
    return common


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def _job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quality", choices=get_args(Quality))
    parser.add_argument("--aspect", choices=get_args(AspectRatio), help="aspect ratio")
    parser.add_argument("--format", choices=get_args(OutputFormat), help="output format")
    parser.add_argument("--background", choices=get_args(Background))
    parser.add_argument("--fidelity", choices=get_args(InputFidelity), help="input fidelity (edits)")
    parser.add_argument("-n", type=_positive, help="number of images (1-10)")
    parser.add_argument("--wait", action="store_true", help="wait for the job and download its images")
    parser.add_argument("--out", help=f"download the images into OUT (implies --wait; default {DEFAULT_OUT})")
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, help="seconds to wait")


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit codes:\n" + "\n".join(f"  {code:<4}{meaning}" for code, meaning in EXIT_CODES.items())
    parser = _Parser(
        prog="imagegen",
        description="Generate images with an imagegen deployment (local or on AWS).",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(defaults=True)],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    common = _common(defaults=False)

    generate = sub.add_parser("generate", parents=[common], help="submit a generation")
    generate.add_argument("prompt")
    _job_options(generate)
    generate.add_argument("--webhook-url", help="POST the job's signed events here")
    generate.add_argument(
        "--webhook-event", action="append", choices=("progress", "completed", "failed"), help="repeatable"
    )
    generate.set_defaults(run=cmd_generate)

    edit = sub.add_parser("edit", parents=[common], help="edit images at http(s) URLs")
    edit.add_argument("images", nargs="+", metavar="IMAGE_URL")
    edit.add_argument("prompt")
    _job_options(edit)
    edit.set_defaults(run=cmd_edit)

    jobs = sub.add_parser("jobs", parents=[common], help="list, show, cancel or wait for jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True, parser_class=_Parser)
    listing = jobs_sub.add_parser("list", parents=[common], help="your jobs, newest first")
    listing.add_argument("--status", choices=[s.value for s in JobStatus])
    listing.add_argument("--limit", type=_positive, default=20, help="how many (default 20)")
    listing.add_argument("--all", action="store_true", help="every job, page after page")
    listing.set_defaults(run=cmd_jobs_list)
    for name, run, text in (
        ("show", cmd_jobs_show, "one job"),
        ("cancel", cmd_jobs_cancel, "cancel a job that has not ended"),
        ("wait", cmd_jobs_wait, "wait for a job to end; --out downloads its images"),
    ):
        action = jobs_sub.add_parser(name, parents=[common], help=text)
        action.add_argument("job_id")
        action.set_defaults(run=run)
        if name == "wait":
            action.add_argument("--out", help="download the images into OUT")
            action.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, help="seconds to wait")

    local = sub.add_parser("local", help="run the local stack in the foreground (what `make local` runs)")
    local.add_argument("--port", type=int, help="the API's port (env IMAGEGEN_LOCAL_PORT, default 8787)")
    local.set_defaults(run=None)

    secret = sub.add_parser("webhook-secret", parents=[common], help="your key's webhook signing secret")
    secret.add_argument("--rotate", action="store_true", help="make a new one (the old signs 24 h more)")
    secret.set_defaults(run=cmd_webhook_secret)

    for group, text in (("keys", "API keys (operator)"), ("credits", "account credits (operator)")):
        admin = sub.add_parser(
            group,
            help=f"{text}: runs python -m imagegen_infra.admin against the keys table",
            description="Arguments after the action go to the admin command, e.g. "
            "`imagegen keys create --owner alice --credits 500`, `imagegen credits audit`.",
        )
        actions = [action for g, action in ADMIN_COMMANDS if g == group]
        admin.add_argument("action", choices=actions)
        admin.add_argument("--local", action="store_true", help=f"the running local stack ({LOCAL_OUTPUTS})")
        admin.add_argument("rest", nargs=argparse.REMAINDER, help="the admin command's own arguments")
        admin.set_defaults(run=None, group=group)
    return parser


# --- main ---------------------------------------------------------------------------------
def _error_line(err: IO[str], as_json: bool, code: str, message: str, **extra: Any) -> None:
    if as_json:
        err.write(json.dumps({"error": {"code": code, "message": message, **extra}}) + "\n")
    else:
        details = "; ".join(
            f"{d.get('field')}: {d.get('message')}" if isinstance(d, dict) else str(d)
            for d in extra.get("details") or []
        )
        status = f" (HTTP {extra['status']})" if extra.get("status") else ""
        err.write(f"imagegen: {code}: {message}{status}{' — ' + details if details else ''}\n")
    err.flush()


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    client_factory: Callable[[Target], Any] | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """The console script. Tests hand in the environment, the folder, the streams and a
    client factory (an SDK client on httpx.MockTransport)."""
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    as_json = bool(getattr(args, "json", False))
    from imagegen import client as sdk

    target: Target | None = None
    try:
        if args.run is None and hasattr(args, "group"):
            return cmd_admin(args, os.environ if env is None else env, cwd or Path.cwd())
        if args.run is None:
            return cmd_local(args)
        target = discover_target(
            args.api_url, args.api_key, os.environ if env is None else env, cwd or Path.cwd()
        )
        factory = client_factory or (lambda t: sdk.Client(t.api_url, t.api_key))
        with factory(target) as api:
            return int(args.run(Context(args, api, out, err)))
    except UsageError as exc:
        _error_line(err, as_json, "usage", str(exc))
        return USAGE
    except sdk.ApiError as exc:
        _error_line(err, as_json, exc.code, exc.message, status=exc.status, details=exc.details)
        return API_ERROR
    except sdk.WaitTimeout as exc:
        _error_line(err, as_json, "timeout", f"{exc}; `imagegen jobs wait {exc.job_id}` waits again")
        return TIMEOUT
    except sdk.ApiConnectionError as exc:
        where = f" (from {target.source})" if target else ""
        _error_line(err, as_json, "unreachable", f"{exc}{where}")
        return UNREACHABLE
    except (sdk.JobFailedError, sdk.JobNotFinishedError, sdk.DownloadError) as exc:
        _error_line(err, as_json, "job", str(exc))
        return JOB_FAILED if isinstance(exc, sdk.JobFailedError) else API_ERROR
    except KeyboardInterrupt:
        err.write("\nimagegen: interrupted\n")
        return INTERRUPTED
    except OSError as exc:  # e.g. --out names a folder that cannot be written
        _error_line(err, as_json, "os_error", str(exc))
        return USAGE


if __name__ == "__main__":
    sys.exit(main())
