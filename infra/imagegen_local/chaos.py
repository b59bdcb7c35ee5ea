"""`make chaos`: the project's own chaos and load run against the local stack, bounded.

    python -m imagegen_local.chaos [--jobs 500] [--burst 1000] [--faults ...] [--deadline 60]

The local stack runs as its own process (what `make local` runs, logs in out/chaos-stack.log)
against an upstream simulator in this process, which injects faults on every knob: 5xx, 429
with Retry-After, timeouts, malformed answers, failed and never-finishing tasks, image
downloads that break off midway. The run:

1. bad input: requests the API must refuse with a 400 in its documented error shape;
2. chaos: N jobs of mixed parameters, `concurrency` submits in flight, from two keys;
3. burst: B more submits at once from the same two keys (`burst_concurrency` in flight);
4. waits until every job is terminal, or until every job's deadline (plus grace) has passed;
5. checks, printed as a table (exit status 1 when one fails): every job terminal by its
   deadline; at most one upstream task per job slot (exactly the recorded one when the job
   completed), by what the simulator says it created; no job holding another request's data
   (stored owner, prompt and parameters, the answers of both keys, its upstream tasks); every
   FAILED job refunded (creditCost 0) with a reason.

It is not a CI test (it takes minutes); tests/chaos runs a small one against the test stack.
`run()` takes any running stack: the one this module starts, or the test session's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import boto3
import httpx

from imagegen.accounts import Accounts
from imagegen.errors import JobNotFound
from imagegen.jobs import JobStore
from imagegen.keys import KeyStore
from imagegen.models import GptImageParams, Job, JobStatus
from imagegen_infra import blueprint as bp
from imagegen_local.simulator import BREAK, HANG, MALFORMED, SimulatorConfig, TaskRecord, UpstreamSimulator
from imagegen_local.simulator.config import parse_faults, parse_latency
from imagegen_local.stack import REPO_ROOT, free_port

# ~20 % of upstream work goes wrong, on every knob: 15 % of API calls (5xx 5, 429 4, timeouts 3,
# malformed answers 3), 7 % of tasks (failed 4, never finishing 3), 5 % of image downloads.
DEFAULT_FAULTS = (
    "error_rate=0.05,rate_limit_rate=0.04,timeout_rate=0.03,malformed_rate=0.03,"
    "task_failure_rate=0.04,never_finish_rate=0.03,download_failure_rate=0.05"
)
# On top of the random faults, the first chaos jobs get one fault each, scripted for that job
# alone, so that every knob is exercised in every run, however small.
GUARANTEED_FAULTS: list[dict[str, Any]] = [
    {"create_failures": [503]},
    {"create_failures": [429]},
    {"create_failures": [HANG]},
    {"create_failures": [MALFORMED]},
    {"poll_failures": [500]},
    {"poll_failures": [429]},
    {"poll_failures": [HANG]},
    {"poll_failures": [MALFORMED]},
    {"task_outcome": "fail"},
    {"task_outcome": "never"},
    {"download_failures": [BREAK]},
]
# Fault kinds by the calls they need: OpenAI renders synchronously and answers with the images,
# so it has neither status calls nor downloads.
FAULT_KINDS = {
    "create 5xx": r"create 5\d\d",
    "create 429": "create 429",
    "create timeout": "create timeout",
    "create malformed": "create malformed",
    "poll 5xx": r"poll 5\d\d",
    "poll 429": "poll 429",
    "poll timeout": "poll timeout",
    "poll malformed": "poll malformed",
    "task failed": "task fail",
    "task never finishing": "task never",
    "download broken midway": "download break",
}
SECOND_OWNER = "chaos-second-owner"
TERMINAL = {JobStatus.COMPLETED.value, JobStatus.FAILED.value}
READY_TIMEOUT_SECONDS = 120
SUBMIT_ATTEMPTS = 10  # a submit answered 503 with Retry-After is tried again, up to this often
LOG_FILE = REPO_ROOT / "out" / "chaos-stack.log"
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ChaosOptions:
    jobs: int = 500
    burst: int = 1000
    concurrency: int = 16
    burst_concurrency: int = 100
    faults: str = DEFAULT_FAULTS
    latency: str = "0.5,3"  # simulator render time, seconds
    deadline: int = 60  # the jobs' deadline (IMAGEGEN_JOB_DEADLINE_SECONDS)
    grace: float = 15.0  # how late after its deadline a job may still turn terminal
    hang_seconds: float = 3.0  # how long a "timeout" answer hangs (more than upstream_timeout)
    upstream_timeout: float = 1.0  # IMAGEGEN_UPSTREAM_TIMEOUT_SECONDS
    provider: str = "apiframe"
    seed: int = 1
    poll_every: float = 1.0  # how often the run looks at the jobs while it waits


@dataclass(frozen=True)
class Caller:
    api_key: str
    owner: str


@dataclass
class Target:
    """A running stack: its API, two keys of different owners, the simulator it calls, and
    the jobs table (read through the stack's moto, AWS_ENDPOINT_URL)."""

    api_url: str
    callers: list[Caller]
    simulator: UpstreamSimulator
    jobs: JobStore
    provider: str


@dataclass
class Submission:
    phase: str
    caller: int  # index into Target.callers
    prompt: str
    params: dict[str, Any]
    status: int | None = None  # None: no answer at all
    answer: Any = None
    job_id: str | None = None
    seconds: float = 0.0  # how long the answer took (the last attempt's)
    # Every 5xx answered to this submit. A 503 service_unavailable with Retry-After (the service
    # overloaded, or the job not started and refunded) is retried after it, as a client should.
    server_errors: list[int] = field(default_factory=list)


@dataclass
class Row:
    check: str
    ok: bool | None  # None: information, not a check
    detail: str


@dataclass
class Report:
    title: str
    rows: list[Row] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(row.ok is not False for row in self.rows)

    def add(self, check: str, ok: bool | None, detail: str) -> None:
        self.rows.append(Row(check, ok, detail))

    def table(self) -> str:
        width = max(len(row.check) for row in self.rows)
        verdict = {True: "PASS", False: "FAIL", None: "    "}
        lines = [self.title, "", f"{'check':<{width}}  result  detail", "-" * (width + 60)]
        lines += [f"{row.check:<{width}}  {verdict[row.ok]:<6}  {row.detail}" for row in self.rows]
        lines.append("")
        lines.append("ALL CHECKS PASSED" if self.passed else "SOME CHECKS FAILED")
        return "\n".join(lines)


# -- the run -----------------------------------------------------------------------------------


def run(target: Target, options: ChaosOptions, say: Callable[[str], None] = print) -> Report:
    started = time.monotonic()
    rng = random.Random(options.seed)
    run_id = f"chaos-{uuid.uuid4().hex[:6]}"  # every prompt of this run starts with it
    # The simulator may have served others before (a test session's): count from here.
    calls_before = len(target.simulator.requests)
    faults_before = Counter(target.simulator.faults.counts)
    limits = httpx.Limits(max_connections=max(options.concurrency, options.burst_concurrency) + 8)
    with httpx.Client(base_url=target.api_url, timeout=30, limits=limits) as http:
        report = Report(
            f"imagegen chaos run: {options.jobs} jobs + {options.burst} burst submits from two keys, "
            f"provider {target.provider}, deadline {options.deadline} s\nfaults: {options.faults}"
        )
        say("bad input ...")
        bad_input_check(http, target, report)
        say(f"submitting {options.jobs} jobs, {options.concurrency} at a time ...")
        chaos = [_new_submission(run_id, "chaos", n, rng, target.provider) for n in range(options.jobs)]
        scripts = [
            target.simulator.script(submission.prompt.rsplit(" ", 1)[1], **faults)
            for submission, faults in zip(chaos, GUARANTEED_FAULTS, strict=False)
        ]
        _in_parallel(lambda s: _submit(http, target, s), chaos, options.concurrency)
        say(f"burst: {options.burst} submits, {options.burst_concurrency} at a time ...")
        burst = [_new_submission(run_id, "burst", n, rng, target.provider) for n in range(options.burst)]
        _in_parallel(lambda s: _submit(http, target, s), burst, options.burst_concurrency)
        submissions = chaos + burst
        submitted_by = time.monotonic()
        say(f"submitted in {submitted_by - started:.0f} s; waiting for every job to end ...")
        stored = _wait_until_terminal(target, run_id, submissions, options, say)
        say("reading every job back through the API with both keys ...")
        views = _read_back(http, target, submissions, options.concurrency)
    target.simulator.remove_scripts(scripts)
    records = [r for r in target.simulator.task_records() if r.prompt.startswith(run_id)]
    check(report, target, options, submissions, stored, views, records)
    calls = len(target.simulator.requests) - calls_before
    faults = Counter(target.simulator.faults.counts) - faults_before
    kinds = {
        k: v
        for k, v in FAULT_KINDS.items()
        if target.provider != "openai" or v.startswith(("create", "task"))
    }
    missing = [kind for kind, label in kinds.items() if not any(re.fullmatch(label, f) for f in faults)]
    report.add(
        "every fault kind injected",
        not missing,
        f"{sum(faults.values())} faults over {calls} upstream calls"
        + (f"; never: {', '.join(missing)}" if missing else ""),
    )
    report.add(
        "faults by kind (info)", None, ", ".join(f"{kind} {count}" for kind, count in sorted(faults.items()))
    )
    report.add("wall time (info)", None, f"{time.monotonic() - started:.0f} s")
    return report


def bad_input_check(http: httpx.Client, target: Target, report: Report) -> None:
    """Malformed requests (issue #9's list among them) answer 400 in the documented shape."""
    key = {"X-API-Key": target.callers[0].api_key}
    bad_urls = [
        "http://host:99999/x.png",
        "http://host:abc/x.png",
        "http://host:-1/x.png",
        "http://[::1/x.png",
        "http://[2002:a9fe:a9fe::1]/latest/meta-data/",
        "https://example.com/" + "a" * 5000,
    ]
    bodies: list[bytes] = [
        json.dumps(_body("bad input", {"input_images": [url]})).encode() for url in bad_urls
    ]
    bodies += [b"{not json", b"[]", json.dumps(_body("bad input", {"quality": "ultra"})).encode()]
    wrong = []
    for body in bodies:
        answer = http.post(
            "/v2/images/generate", content=body, headers={**key, "Content-Type": "application/json"}
        )
        if answer.status_code != 400 or not _error_shaped(answer):
            wrong.append(f"{answer.status_code} for {body[:60]!r}")
    report.add(
        "bad input answered 400 in our shape",
        not wrong,
        f"{len(bodies) - len(wrong)}/{len(bodies)}" + (f"; {'; '.join(wrong[:3])}" if wrong else ""),
    )


def _new_submission(run_id: str, phase: str, n: int, rng: random.Random, provider: str) -> Submission:
    params: dict[str, Any] = {
        "quality": rng.choice(["low", "medium", "high", "auto"]),
        "aspect_ratio": rng.choice(["1:1", "3:2", "2:3"]),
        "output_format": "png" if provider == "apiinone" else rng.choice(["png", "webp", "jpeg"]),
        "number_of_images": rng.choice([1, 1, 1, 2, 3]),
    }
    marker = uuid.uuid4().hex[:12]
    return Submission(phase, caller=n % 2, prompt=f"{run_id} {phase} {n} #{marker}", params=params)


def _body(prompt: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": prompt, "model": "gpt-image-1.5", "gptImageParams": params}


def _submit(http: httpx.Client, target: Target, submission: Submission) -> None:
    headers = {"X-API-Key": target.callers[submission.caller].api_key}
    for _ in range(SUBMIT_ATTEMPTS):
        started = time.monotonic()
        try:
            answer = http.post(
                "/v2/images/generate", json=_body(submission.prompt, submission.params), headers=headers
            )
        except httpx.HTTPError as exc:
            submission.status, submission.answer = None, f"{type(exc).__name__}: {exc}"
            return
        finally:
            submission.seconds = time.monotonic() - started
        submission.status = answer.status_code
        submission.answer = _json_or_text(answer)
        if answer.status_code >= 500:
            submission.server_errors.append(answer.status_code)
        retry_after = _overload_retry_after(answer, submission.answer)
        if retry_after is None:
            break
        time.sleep(retry_after)
    if submission.status == 202 and isinstance(submission.answer, dict):
        submission.job_id = str(submission.answer.get("jobId") or "") or None


def _overload_retry_after(answer: httpx.Response, body: Any) -> float | None:
    """Seconds to wait when `answer` is the documented overload answer (503 service_unavailable
    with Retry-After), else None: any other answer is final."""
    if answer.status_code != 503 or not _error_shaped(answer):
        return None
    if body["error"]["code"] != "service_unavailable":
        return None
    value = answer.headers.get("retry-after", "")
    return min(float(value), 10.0) if value.isdigit() else None


def _wait_until_terminal(
    target: Target,
    run_id: str,
    submissions: list[Submission],
    options: ChaosOptions,
    say: Callable[[str], None],
) -> dict[str, Job]:
    """Watch the jobs table (one scan a round: reading 1,500 jobs one by one, or through the
    API, would be load of our own making) until every job of the run is terminal, those whose
    submit was answered with an error included, or until the last deadline plus grace has
    passed; then read each job once."""
    accepted = {s.job_id for s in submissions if s.job_id}
    give_up = time.monotonic() + options.deadline + options.grace + 5
    last_said = 0.0
    while True:
        table = _scan(target.jobs)
        ours = accepted | {job_id for job_id, (_, prompt) in table.items() if prompt.startswith(run_id)}
        still_open = sum(1 for job_id in ours if table.get(job_id, ("", ""))[0] not in TERMINAL)
        if not still_open or time.monotonic() > give_up:
            break
        if time.monotonic() - last_said > 10:
            say(f"  {still_open} of {len(ours)} jobs still open")
            last_said = time.monotonic()
        time.sleep(options.poll_every)
    ids = sorted(ours)
    return {j: job for j, job in zip(ids, _in_parallel(_reader(target.jobs), ids, 8), strict=True) if job}


def _reader(jobs: JobStore) -> Callable[[str], Job | None]:
    def read(job_id: str) -> Job | None:
        try:
            return jobs.get(job_id)
        except JobNotFound:
            return None

    return read


def _scan(jobs: JobStore) -> dict[str, tuple[str, str]]:
    """job id -> (status, prompt) of every job in the table."""
    found: dict[str, tuple[str, str]] = {}
    kwargs: dict[str, Any] = {
        "ProjectionExpression": "job_id, #s, prompt",
        "ExpressionAttributeNames": {"#s": "status"},
    }
    while True:
        page = jobs.table.scan(**kwargs)
        found.update({str(i["job_id"]): (str(i.get("status")), str(i.get("prompt"))) for i in page["Items"]})
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclass
class Views:
    own: dict[str, Any] = field(default_factory=dict)  # job id -> (status, body) with the submitter's key
    other: dict[str, int | None] = field(default_factory=dict)  # job id -> status with the other key


def _read_back(http: httpx.Client, target: Target, submissions: list[Submission], workers: int) -> Views:
    views = Views()
    lock = threading.Lock()

    def read(submission: Submission) -> None:
        job_id, caller = submission.job_id, submission.caller
        assert job_id is not None
        own = _get(http, job_id, target.callers[caller].api_key)
        other = _get(http, job_id, target.callers[1 - caller].api_key)
        with lock:
            views.own[job_id] = own
            views.other[job_id] = other[0]

    _in_parallel(read, [s for s in submissions if s.job_id], workers)
    return views


def _get(http: httpx.Client, job_id: str, api_key: str) -> tuple[int | None, Any]:
    try:
        answer = http.get(f"/v2/jobs/{job_id}", headers={"X-API-Key": api_key})
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}"
    return answer.status_code, _json_or_text(answer)


# -- the checks --------------------------------------------------------------------------------


def check(
    report: Report,
    target: Target,
    options: ChaosOptions,
    submissions: list[Submission],
    stored: dict[str, Job],
    views: Views,
    records: list[TaskRecord],
) -> None:
    """Add the run's checks to `report`, from what was submitted and answered, what the jobs
    table holds, what the API showed each key, and what the simulator created."""
    accepted = [s for s in submissions if s.job_id]
    statuses = Counter(str(s.status) if s.status else str(s.answer).split(":")[0] for s in submissions)
    report.add(
        "submits answered 202 with a job id",
        len(accepted) == len(submissions),
        f"{len(accepted)}/{len(submissions)}; answers: "
        + ", ".join(f"{status} x{count}" for status, count in sorted(statuses.items())),
    )
    for phase in ("chaos", "burst"):
        times = [s.seconds for s in submissions if s.phase == phase]
        if times:
            report.add(f"{phase} submit answer time (info)", None, _spread(times))
    unanswered = [s for s in submissions if s.status is None]
    report.add("every submit was answered", not unanswered, f"{len(unanswered)} were not")
    not_overload = [code for s in submissions for code in s.server_errors if code != 503]
    report.add("no submit answered a 5xx but 503", not not_overload, _counted(not_overload))
    overloaded = [s for s in submissions if 503 in s.server_errors]
    report.add(
        "503 service_unavailable answers, retried after Retry-After (info)",
        None,
        f"{sum(s.server_errors.count(503) for s in submissions)} to {len(overloaded)} submits",
    )
    duplicates = len(accepted) - len({s.job_id for s in accepted})
    report.add("every accepted submit got its own job id", duplicates == 0, f"{duplicates} duplicate ids")

    _deadline_check(report, options, accepted, stored)
    _unanswered_jobs_check(report, submissions, stored)
    mixed_stored = _mixed_stored(accepted, stored, target)
    report.add(
        "stored job = its own request (owner, prompt, params)",
        not mixed_stored,
        f"{len(mixed_stored)} of {len(accepted)} hold another request's data" + _examples(mixed_stored),
    )
    mixed_answers = _mixed_answers(accepted, views)
    report.add(
        "GET answers the owner with its job, the other key 404",
        not mixed_answers,
        f"{len(mixed_answers)} of {len(accepted)} wrong" + _examples(mixed_answers),
    )
    _upstream_checks(report, target, accepted, stored, records)
    _refund_check(report, accepted, stored, views)
    _outcome_info(report, accepted, stored, records)


def _deadline_check(
    report: Report, options: ChaosOptions, accepted: list[Submission], stored: dict[str, Job]
) -> None:
    """Every job of the run, those behind an error answer too, and every accepted job id."""
    late: list[str] = [f"{s.job_id} not stored" for s in accepted if s.job_id not in stored]
    overshoot: list[float] = []
    for job in stored.values():
        if not job.status.is_terminal or job.completed_at is None:
            late.append(f"{job.job_id} never ended ({job.status.value})")
            continue
        over = (job.completed_at - job.deadline_at).total_seconds()
        overshoot.append(over)
        if over > options.grace:
            late.append(f"{job.job_id} ended {over:.1f} s after its deadline")
    worst = f"; latest end {max(overshoot):+.1f} s from deadline" if overshoot else ""
    total = len(stored) + len([s for s in accepted if s.job_id not in stored])
    report.add(
        f"every job terminal by its deadline (+{options.grace:.0f} s)",
        not late,
        f"{total - len(late)}/{total}{worst}" + _examples(late),
    )


def _unanswered_jobs_check(report: Report, submissions: list[Submission], stored: dict[str, Job]) -> None:
    """Jobs nobody was given the id of. Behind a 5xx the client was told the job failed (503:
    "not charged, please retry"), so such a job must end FAILED and refunded, or a retry pays
    twice; behind a lost answer (client timeout) it may run, and is counted."""
    given = {s.job_id for s in submissions if s.job_id}
    by_prompt = {s.prompt: s for s in submissions}
    behind_error: list[str] = []
    charged: list[str] = []
    behind_no_answer = 0
    for job in stored.values():
        if job.job_id in given:
            continue
        submission = by_prompt.get(job.prompt)
        if submission is not None and submission.server_errors:
            behind_error.append(job.job_id)
            if job.status is not JobStatus.FAILED:
                charged.append(f"{job.job_id} {job.status.value} behind a {submission.server_errors}")
        elif submission is not None and submission.status is None:
            behind_no_answer += 1
    report.add(
        "a submit answered 5xx leaves no charged job",
        not charged,
        f"{len(behind_error)} jobs behind 5xx answers, {len(charged)} not FAILED; "
        f"{behind_no_answer} jobs behind lost answers" + _examples(charged),
    )


def _mixed_stored(accepted: list[Submission], stored: dict[str, Job], target: Target) -> list[str]:
    wrong = []
    for submission in accepted:
        job = stored.get(submission.job_id or "")
        if job is None:
            continue  # counted by the deadline check
        expected = GptImageParams.model_validate(submission.params)
        owner = target.callers[submission.caller].owner
        if job.owner != owner or job.prompt != submission.prompt or job.params != expected:
            wrong.append(f"{submission.prompt!r} -> job {job.job_id} holds {job.prompt!r} of {job.owner}")
    return wrong


def _mixed_answers(accepted: list[Submission], views: Views) -> list[str]:
    wrong = []
    for submission in accepted:
        job_id = submission.job_id or ""
        status, body = views.own.get(job_id, (None, None))
        if status != 200 or not isinstance(body, dict) or body.get("id") != job_id:
            wrong.append(f"{job_id}: owner read {status} {str(body)[:80]}")
        elif body.get("prompt") != submission.prompt:
            wrong.append(f"{job_id}: owner read the prompt {body.get('prompt')!r}")
        elif views.other.get(job_id) != 404:
            wrong.append(f"{job_id}: the other key read {views.other.get(job_id)}")
    return wrong


def _upstream_checks(
    report: Report,
    target: Target,
    accepted: list[Submission],
    stored: dict[str, Job],
    records: list[TaskRecord],
) -> None:
    """What the simulator created, attributed to jobs by Idempotency-Key (imagegen-{job}-{slot},
    apiframe) or by the prompt's unique marker (apiin.one and OpenAI take no key)."""
    by_prompt = {s.prompt: s.job_id for s in accepted}
    per_job: dict[str, list[TaskRecord]] = {}
    unattributed: list[str] = []
    mixed: list[str] = []
    for record in records:
        job_id = _job_of_key(record.idempotency_key) or by_prompt.get(record.prompt)
        if job_id is None:
            # A submit that got no job id (its answer was lost) still made this job.
            unattributed.append(f"task {record.task_id} for {record.prompt!r}")
            continue
        per_job.setdefault(job_id, []).append(record)
        job = stored.get(job_id)
        if job is not None and record.prompt != job.prompt:
            mixed.append(f"task {record.task_id} for job {job_id} rendered {record.prompt!r}")
    over: list[str] = []
    for submission in accepted:
        job = stored.get(submission.job_id or "")
        if job is None:
            continue
        tasks = per_job.get(job.job_id, [])
        problem = _slot_problem(job, tasks)
        if problem:
            over.append(f"{job.job_id}: {problem}")
    report.add(
        "at most one upstream task per job slot (the recorded one)",
        not over and not unattributed,
        f"{sum(len(t) for t in per_job.values())} tasks for {len(per_job)} jobs; {len(over)} jobs wrong, "
        f"{len(unattributed)} tasks of jobs nobody was told about" + _examples(over + unattributed),
    )
    report.add(
        "upstream tasks render their own job's prompt", not mixed, f"{len(mixed)} wrong" + _examples(mixed)
    )


def _job_of_key(key: str | None) -> str | None:
    if not key or not key.startswith("imagegen-"):
        return None
    return key.removeprefix("imagegen-").rsplit("-", 1)[0]


def _slot_problem(job: Job, tasks: list[TaskRecord]) -> str | None:
    keyed = [t for t in tasks if t.idempotency_key]
    if keyed:
        per_slot = Counter(t.idempotency_key for t in keyed)
        doubled = [key for key, count in per_slot.items() if count > 1]
        if doubled:
            return f"{len(doubled)} slots with more than one task"
    recorded = {t.task_id for t in job.upstream_tasks}
    created = {t.task_id for t in tasks}
    if not recorded <= created:
        return f"records tasks the simulator never made for it: {sorted(recorded - created)}"
    if job.status is JobStatus.COMPLETED and created != recorded:
        return f"completed with {len(recorded)} recorded tasks but {len(created)} created upstream"
    return None


def _refund_check(report: Report, accepted: list[Submission], stored: dict[str, Job], views: Views) -> None:
    failed = [s for s in accepted if (job := stored.get(s.job_id or "")) and job.status is JobStatus.FAILED]
    wrong = []
    for submission in failed:
        _, body = views.own.get(submission.job_id or "", (None, None))
        if (
            not isinstance(body, dict)
            or body.get("creditCost") != 0
            or not str(body.get("error") or "").strip()
        ):
            wrong.append(f"{submission.job_id}: {str(body)[:100]}")
    report.add(
        "every FAILED job refunded (creditCost 0) with a reason",
        not wrong,
        f"{len(failed) - len(wrong)}/{len(failed)}" + _examples(wrong),
    )


def _outcome_info(
    report: Report, accepted: list[Submission], stored: dict[str, Job], records: list[TaskRecord]
) -> None:
    jobs = [stored[s.job_id] for s in accepted if s.job_id in stored]
    outcome = Counter(job.status.value for job in jobs)
    report.add(
        "accepted jobs by status (info)", None, ", ".join(f"{k} {v}" for k, v in sorted(outcome.items()))
    )
    reasons = Counter(_reason_kind(job.error or "") for job in jobs if job.status is JobStatus.FAILED)
    report.add("FAILED by reason (info)", None, ", ".join(f"{k}: {v}" for k, v in reasons.most_common(6)))
    durations = [(j.completed_at - j.created_at).total_seconds() for j in jobs if j.completed_at]
    if durations:
        report.add("time to terminal (info)", None, _spread(durations))
    # Issue #11's measure: from the simulator's own record of when a job's last task finished
    # to the job's completedAt.
    finished_at = {t.task_id: t.finished_at for t in records}
    lags = []
    for job in jobs:
        ends = [finished_at.get(t.task_id) for t in job.upstream_tasks]
        if job.status is JobStatus.COMPLETED and job.completed_at and ends and all(ends):
            lags.append((job.completed_at - max(e for e in ends if e)).total_seconds())
    if lags:
        report.add("completedAt - upstream finish (info)", None, _spread(lags))


def _reason_kind(error: str) -> str:
    """A failure reason without its ids and numbers, so equal causes count together."""
    return re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+(\.\d+)?", "#", error)[:90]


def _spread(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (
        f"p50 {statistics.median(ordered):.2f} s, p95 {p95:.2f} s, max {ordered[-1]:.2f} s (n={len(ordered)})"
    )


def _counted(codes: list[int]) -> str:
    return ", ".join(f"{code} x{n}" for code, n in sorted(Counter(codes).items())) or "none"


def _examples(items: list[str]) -> str:
    return f"; e.g. {' | '.join(items[:2])}" if items else ""


def _error_shaped(answer: httpx.Response) -> bool:
    body = _json_or_text(answer)
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
        and isinstance(error.get("details"), list)
    )


def _json_or_text(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return answer.text[:300]


def _in_parallel(work: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="chaos") as pool:
        return list(pool.map(work, items))


# -- the command: a stack of its own -------------------------------------------------------------


def simulator_config(options: ChaosOptions) -> SimulatorConfig:
    faults: dict[str, Any] = {"hang_seconds": options.hang_seconds, **parse_faults(options.faults)}
    return SimulatorConfig(latency=parse_latency(options.latency), seed=options.seed, **faults)


def stack_environment(options: ChaosOptions) -> dict[str, str]:
    """Fast polls and a short deadline, so a 500-job run ends in minutes."""
    return {
        "IMAGEGEN_FIRST_POLL_SECONDS": "1",
        "IMAGEGEN_POLL_INTERVAL_SECONDS": "1",
        "IMAGEGEN_RETRY_BASE_SECONDS": "0.5",
        "IMAGEGEN_RETRY_MAX_SECONDS": "4",
        "IMAGEGEN_JOB_DEADLINE_SECONDS": str(options.deadline),
        "IMAGEGEN_UPSTREAM_TIMEOUT_SECONDS": str(options.upstream_timeout),
        "IMAGEGEN_RENDER_TIMEOUT_SECONDS": str(max(10.0, 4 * options.upstream_timeout)),
        "IMAGEGEN_PROVIDER": options.provider,
    }


def main(argv: list[str] | None = None) -> int:
    options = _parse_args(argv)
    report = run_on_own_stack(options, LOG_FILE, say=lambda m: print(f"[chaos] {m}", flush=True))
    print()
    print(report.table(), flush=True)
    return 0 if report.passed else 1


def run_on_own_stack(options: ChaosOptions, log_file: Path, say: Callable[[str], None] = print) -> Report:
    """Start an upstream simulator here and a local stack (`python -m imagegen_local`) in its
    own process, run, stop both. This process's environment is left as it was: the stack's
    moto is addressed explicitly, so the run can also happen inside a test session."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with UpstreamSimulator(simulator_config(options)) as simulator:
        outputs_file = Path(tempfile.mkdtemp(prefix="imagegen-chaos-")) / "outputs.json"
        # Nothing of this process's own AWS or imagegen settings (a test session's stack) leaks in.
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("IMAGEGEN_", "AWS_", "MOTO_", "POWERTOOLS_"))
        }
        env = {
            **inherited,
            **stack_environment(options),
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "functions"), str(REPO_ROOT / "infra")]),
            "IMAGEGEN_LOCAL_PORT": str(free_port()),
            "IMAGEGEN_LOCAL_OUTPUTS": str(outputs_file),
            "IMAGEGEN_PROVIDER_BASE_URL": simulator.base_url,
        }
        say(f"starting the local stack (logs: {log_file}) ...")
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "imagegen_local"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
            )
            try:
                outputs = _wait_for_outputs(process, outputs_file, log_file)
                return run(target_for(outputs, simulator, options.provider), options, say)
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def target_for(outputs: dict[str, str], simulator: UpstreamSimulator, provider: str) -> Target:
    """A Target for a running stack, reached through its outputs' moto endpoint; the second key
    belongs to another owner."""
    dynamodb = boto3.resource(
        "dynamodb",
        endpoint_url=outputs["AwsEndpointUrl"],
        region_name=bp.LOCAL_REGION,
        aws_access_key_id="testing",  # moto's: the local stack accepts any
        aws_secret_access_key="testing",  # noqa: S106
    )
    keys = KeyStore(bp.API_KEYS_TABLE.name, resource=dynamodb)
    second = keys.create(SECOND_OWNER, name="chaos")
    Accounts(bp.API_KEYS_TABLE.name, resource=dynamodb).grant(SECOND_OWNER, 1_000_000)  # jobs are charged
    return Target(
        api_url=outputs["ApiUrl"],
        callers=[
            Caller(outputs["ApiKey"], keys.authenticate(outputs["ApiKey"]).owner),
            Caller(second, SECOND_OWNER),
        ],
        simulator=simulator,
        jobs=JobStore(outputs.get("JobsTable") or bp.JOBS_TABLE.name, resource=dynamodb),
        provider=provider,
    )


def _wait_for_outputs(process: subprocess.Popen[bytes], outputs_file: Path, log_file: Path) -> dict[str, str]:
    give_up = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RuntimeError(f"the local stack exited early (code {process.returncode}); see {log_file}")
        if outputs_file.exists():
            return dict(json.loads(outputs_file.read_text()))
        time.sleep(0.2)
    raise RuntimeError(f"the local stack was not ready after {READY_TIMEOUT_SECONDS} s; see {log_file}")


def _parse_args(argv: list[str] | None) -> ChaosOptions:
    defaults = ChaosOptions()
    parser = argparse.ArgumentParser(
        prog="python -m imagegen_local.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=defaults.jobs, help="jobs under faults (default 500)")
    parser.add_argument("--burst", type=int, default=defaults.burst, help="burst submits (default 1000)")
    parser.add_argument(
        "--concurrency", type=int, default=defaults.concurrency, help="chaos submits in flight"
    )
    parser.add_argument("--burst-concurrency", type=int, default=defaults.burst_concurrency)
    parser.add_argument(
        "--faults", default=defaults.faults, help="simulator fault knobs (IMAGEGEN_SIM_FAULTS)"
    )
    parser.add_argument("--latency", default=defaults.latency, help="simulator render time 'min,max' seconds")
    parser.add_argument("--deadline", type=int, default=defaults.deadline, help="job deadline, seconds")
    parser.add_argument("--grace", type=float, default=defaults.grace, help="seconds a job may end late")
    parser.add_argument("--provider", default=defaults.provider, choices=["apiframe", "apiinone", "openai"])
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    return replace(
        defaults,
        jobs=args.jobs,
        burst=args.burst,
        concurrency=args.concurrency,
        burst_concurrency=args.burst_concurrency,
        faults=args.faults,
        latency=args.latency,
        deadline=args.deadline,
        grace=args.grace,
        provider=args.provider,
        seed=args.seed,
    )


if __name__ == "__main__":
    sys.exit(main())
