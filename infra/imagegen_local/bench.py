"""`make bench`: what users wait for and what they pay, measured on the local stack.

    python -m imagegen_local.bench [--jobs 40] [--spread 0.5] [--pairs 10] [--quick]

Each configuration (`naive`: today's cloud defaults from cdk.json, Standard, first poll after
5 s then every 2 s; `default`: the project's PollSchedule defaults) runs in its own process: a
local stack (moto, our handlers in-process, the upstream simulator at the seeds' 3-10 s
latency) and the same workload, single-image jobs submitted `spread` seconds apart so the
machine is not the bottleneck. Per job, everything is counted, not estimated:

- lag: the simulator's own record of when each task finished (GET /_simulator/tasks,
  finishedAt) to the job's completedAt;
- upstream calls (the simulator's request log: creates and status calls; downloads apart);
- state transitions (StateEntered events of each execution's history);
- Lambda invocations and GB-s (the local runtime's record of each invocation: duration x the
  function's memory from the blueprint);
- AWS requests, by service and operation (every botocore request this process sends, at
  `Endpoint.make_request`), DynamoDB read/write units from those requests' items by DynamoDB's
  rules (moto reports a constant ConsumedCapacity): ceil(size / 4 KB) per read (half when
  eventually consistent), ceil(size / 1 KB) per write, transactions twice, one more write per
  write that puts or removes an open-jobs index entry.

Prices and quotas come from bench/prices.json only. Besides, this module measures the cold
import of each handler against `import boto3` (subprocesses, alternating, medians), finalize of
a 10 x 20 MB job (peak RSS growth; time / the largest single copy) and the submit path against
its floor (the AWS calls it cannot avoid). Results: bench/results.json and one table.
Scratch (logs, per-configuration results): .bench/ (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRATCH = REPO_ROOT / ".bench"
RESULTS = REPO_ROOT / "bench" / "results.json"
PRICES = REPO_ROOT / "bench" / "prices.json"
SEEDS_LATENCY = "3,10"  # seconds: the seeds' renders (issue #11)
NAIVE = {  # today's cloud defaults (cdk.json firstPollSeconds / pollIntervalSeconds), fixed
    "IMAGEGEN_FIRST_POLL_SECONDS": "5",
    "IMAGEGEN_POLL_INTERVAL_SECONDS": "2",
    "IMAGEGEN_ADAPTIVE_POLLING": "false",
}
HANDLERS = {
    "api": "api.handler",
    "workflow": "workflow.handler",
    "s3_edit": "s3_edit.handler",
    "job_events": "job_events.handler",
    "intake": "intake.handler",
    "webhooks": "webhooks.handler",
}
KB = 1024


def default_schedule_env() -> dict[str, str]:
    """The project's defaults, spelled out (the local stack otherwise polls every second)."""
    from imagegen.settings import ENV_PREFIX, PollSchedule

    schedule = PollSchedule()
    return {ENV_PREFIX + k.upper(): str(v).lower() for k, v in schedule.model_dump().items()}


CONFIGS: dict[str, Callable[[], dict[str, str]]] = {
    "naive": lambda: dict(NAIVE),
    "default": default_schedule_env,
}


# -- counting every AWS request this process sends -------------------------------------------------


class AwsCounter:
    """Counts each request botocore sends from this process (our handlers, the triggers, moto's
    Step Functions interpreter), and DynamoDB units from its items. Requests sent while
    `own()` is active (the bench reading results) are not counted."""

    def __init__(self, open_index_attribute: str, index_key_attribute: str) -> None:
        self.calls: Counter[str] = Counter()
        self.read_units = 0.0
        self.write_units = 0.0
        self._open_attrs = (open_index_attribute, index_key_attribute)
        self._sizes: dict[str, tuple[int, bool]] = {}  # table/key -> (item size, in the open index)
        self._lock = threading.Lock()
        self._local = threading.local()

    @contextmanager
    def own(self) -> Iterator[None]:
        self._local.own = True
        try:
            yield
        finally:
            self._local.own = False

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.read_units = self.write_units = 0.0

    def install(self) -> None:
        from botocore.endpoint import Endpoint

        original = Endpoint.make_request
        counter = self

        def make_request(endpoint: Any, operation_model: Any, request_dict: Any) -> Any:
            answer = original(endpoint, operation_model, request_dict)
            if not getattr(counter._local, "own", False):
                counter.record(operation_model, request_dict, answer)
            return answer

        Endpoint.make_request = make_request  # type: ignore[method-assign]

    def record(self, operation_model: Any, request_dict: dict[str, Any], answer: Any) -> None:
        service = operation_model.service_model.service_name
        name = operation_model.name
        with self._lock:
            self.calls[f"{service}.{name}"] += 1
        if service != "dynamodb":
            return
        try:
            body = json.loads(request_dict.get("body") or b"{}")
            parsed = answer[1] if isinstance(answer, tuple) else {}
        except ValueError:
            return
        with self._lock:
            self._dynamodb_units(name, body, parsed)

    def _dynamodb_units(self, name: str, body: dict[str, Any], parsed: dict[str, Any]) -> None:
        table = body.get("TableName", "")
        half = 1.0 if body.get("ConsistentRead") else 0.5
        if name == "GetItem":
            item = parsed.get("Item") or {}
            self.read_units += half * max(1, math.ceil(_item_size(item) / (4 * KB)))
            if item:
                self._remember(table, body.get("Key", {}), item)
        elif name in ("Query", "Scan"):
            size = sum(_item_size(i) for i in parsed.get("Items", []))
            self.read_units += half * max(1, math.ceil(size / (4 * KB)))
        elif name in ("PutItem", "UpdateItem", "DeleteItem"):
            self.write_units += self._write_units(table, body, name)
        elif name == "TransactWriteItems":
            for entry in body.get("TransactItems", []):
                for kind, write in entry.items():
                    operation = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}.get(kind)
                    if operation:
                        self.write_units += 2 * self._write_units(
                            write.get("TableName", ""), write, operation
                        )
                    else:  # ConditionCheck: a read, billed as a transactional write unit
                        self.write_units += 2
        elif name == "TransactGetItems":
            self.read_units += 2 * len(body.get("TransactItems", []))

    def _write_units(self, table: str, body: dict[str, Any], name: str) -> float:
        key = body.get("Key") or {}
        if name == "PutItem":
            item = body.get("Item", {})
            key = {k: v for k, v in item.items() if k in ("job_id", "key_hash", "webhook_id", "id")}
            size, indexed = _item_size(item), all(a in item for a in self._open_attrs)
        else:  # an update or delete: the item as last seen (its size bounds the write)
            size, indexed = self._sizes.get(_key_id(table, key), (KB, False))
            expression = body.get("UpdateExpression", "")
            if name == "DeleteItem" or ("REMOVE" in expression and self._open_attrs[0] in expression):
                indexed, was = False, indexed
            else:
                was = indexed
        previous = self._sizes.get(_key_id(table, key), (0, False))
        units = max(1, math.ceil(max(size, previous[0]) / KB))
        # A KEYS_ONLY index entry (< 1 KB) written when the item enters or stays in the index,
        # deleted when it leaves it.
        if indexed or previous[1] or (name != "PutItem" and was):
            units += 1
        self._sizes[_key_id(table, key)] = (size, indexed)
        return float(units)

    def _remember(self, table: str, key: dict[str, Any], item: dict[str, Any]) -> None:
        self._sizes[_key_id(table, key)] = (_item_size(item), all(a in item for a in self._open_attrs))


def _key_id(table: str, key: dict[str, Any]) -> str:
    return table + json.dumps(key, sort_keys=True)


def _item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (wire format)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    (kind, inner), *_ = value.items()
    if kind in ("S", "B"):
        return len(str(inner).encode())
    if kind == "N":
        return len(str(inner)) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in inner.items())
    return sum(len(str(v).encode()) for v in inner)  # sets


# -- one configuration on its own stack -------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    jobs: int = 40
    spread: float = 0.5  # seconds between submits
    latency: str = SEEDS_LATENCY
    timeout: float = 180.0
    submit_samples: int = 20


def run_configuration(name: str, workload: Workload, log: Callable[[str], None]) -> dict[str, Any]:
    """Start a local stack with the configuration's schedule, run the workload, count."""
    import boto3
    import httpx

    from imagegen.jobs import OPEN_MARKER, SWEEP_AFTER, JobStore
    from imagegen_infra import blueprint as bp
    from imagegen_local.stack import LocalStack, LocalStackConfig, free_port

    counter = AwsCounter(OPEN_MARKER, SWEEP_AFTER)
    counter.install()
    stack = LocalStack(
        LocalStackConfig(port=free_port(), sim_latency=workload.latency, settings_env=CONFIGS[name]())
    )
    outputs = stack.start()
    try:
        with counter.own():
            jobs = JobStore(bp.JOBS_TABLE.name, resource=boto3.resource("dynamodb"))
        http = httpx.Client(base_url=outputs["ApiUrl"], timeout=60, headers={"X-API-Key": outputs["ApiKey"]})
        log(f"[{name}] warm-up: 3 jobs")
        warm = [_submit(http, f"bench warm-up {n}") for n in range(3)]
        _wait_terminal(jobs, counter, [j for j in warm if j], workload.timeout)
        counter.reset()
        invocations_before = len(stack.runtime.invocations)
        requests_before = len(stack.simulator.requests)
        log(f"[{name}] {workload.jobs} jobs, one every {workload.spread} s")
        ids: list[str | None] = [None] * workload.jobs
        started = time.monotonic()

        def submit(n: int) -> None:
            time.sleep(max(0.0, started + n * workload.spread - time.monotonic()))
            ids[n] = _submit(http, f"bench {name} {n}")

        threads = [threading.Thread(target=submit, args=(n,)) for n in range(workload.jobs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        accepted = [j for j in ids if j]
        done = _wait_terminal(jobs, counter, accepted, workload.timeout)
        time.sleep(2)  # the stream trigger announces the last jobs' changes
        calls = Counter(counter.calls)
        read_units, write_units = counter.read_units, counter.write_units
        invocations = stack.runtime.invocations[invocations_before:]
        upstream = Counter(_upstream_kind(m, p) for m, p, _ in stack.simulator.requests[requests_before:])
        records = httpx.get(stack.simulator.base_url + "/_simulator/tasks", timeout=30).json()["tasks"]
        with counter.own():
            transitions = _transitions(outputs["StateMachineArn"], set(accepted))
        result = _per_job(
            name, done, records, calls, read_units, write_units, invocations, upstream, transitions
        )
        result["submit"] = (
            _submit_path(http, counter, stack, workload.submit_samples) if name == "default" else None
        )
        http.close()
        return result
    finally:
        stack.stop()


def _submit(http: Any, prompt: str) -> str | None:
    body = {"prompt": prompt, "model": "gpt-image-1.5", "gptImageParams": {"number_of_images": 1}}
    answer = http.post("/v2/images/generate", json=body)
    return str(answer.json()["jobId"]) if answer.status_code == 202 else None


def _wait_terminal(jobs: Any, counter: AwsCounter, ids: list[str], timeout: float) -> list[Any]:
    give_up = time.monotonic() + timeout
    while True:
        with counter.own():
            found = [jobs.get(job_id) for job_id in ids]
        if all(job.status.is_terminal for job in found) or time.monotonic() > give_up:
            return found
        time.sleep(0.5)


def _upstream_kind(method: str, path: str) -> str:
    if "/_simulator" in path:
        return "bench"
    if method == "POST":
        return "create"
    return "status" if path.startswith("/v2/jobs/") else "download"


def _transitions(machine_arn: str, job_ids: set[str]) -> list[int]:
    import boto3

    sfn = boto3.client("stepfunctions")
    counts = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine_arn):
        for execution in page["executions"]:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            if json.loads(described.get("input") or "{}").get("jobId") not in job_ids:
                continue
            events = []
            for history in sfn.get_paginator("get_execution_history").paginate(
                executionArn=execution["executionArn"]
            ):
                events += history["events"]
            counts.append(sum(1 for e in events if e["type"].endswith("StateEntered")))
    return counts


def _per_job(
    name: str,
    done: list[Any],
    records: list[dict[str, Any]],
    calls: Counter[str],
    read_units: float,
    write_units: float,
    invocations: list[Any],
    upstream: Counter[str],
    transitions: list[int],
) -> dict[str, Any]:
    from imagegen_infra import blueprint as bp

    finished = {r["taskId"]: r["finishedAt"] for r in records}
    lags = []
    for job in done:
        ends = [finished.get(t.task_id) for t in job.upstream_tasks]
        if job.completed_at and ends and all(ends):
            last = max(datetime.fromisoformat(str(e).replace("Z", "+00:00")) for e in ends)
            lags.append((job.completed_at - last).total_seconds())
    n = max(len(done), 1)
    memory = {f.name: f.memory_mb for f in bp.ALL_FUNCTIONS}
    gb_seconds = sum(
        math.ceil(i.duration_ms) / 1000 * memory.get(i.function_name, 128) / 1024 for i in invocations
    )
    by_function = Counter(i.function_name for i in invocations)
    return {
        "configuration": name,
        "jobs": len(done),
        "completed": sum(1 for j in done if j.completed_at and j.status.value == "COMPLETED"),
        "lag_mean_s": statistics.fmean(lags) if lags else None,
        "lag_p95_s": _p95(lags),
        "upstream_calls": (upstream["create"] + upstream["status"]) / n,
        "upstream_downloads": upstream["download"] / n,
        "state_transitions": statistics.fmean(transitions) if transitions else 0.0,
        "lambda_invocations": len(invocations) / n,
        "lambda_invocations_by_function": {k: v / n for k, v in sorted(by_function.items())},
        "lambda_gb_seconds": gb_seconds / n,
        "lambda_seconds": sum(i.duration_ms for i in invocations) / 1000 / n,
        "dynamodb_read_units": read_units / n,
        "dynamodb_write_units": write_units / n,
        "aws_requests": {k: v / n for k, v in sorted(calls.items())},
    }


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _submit_path(http: Any, counter: AwsCounter, stack: Any, samples: int) -> dict[str, Any]:
    """A submit through the API (gateway -> API function -> its AWS calls), sequentially, against
    its floor: the AWS calls a submit cannot avoid (read the key, write the job, start the
    workflow), sent straight to the same moto; medians."""
    import boto3

    from imagegen.keys import hash_key
    from imagegen_infra import blueprint as bp

    counter.reset()
    through_api = []
    for n in range(samples):
        begin = time.perf_counter()
        _submit(http, f"bench submit {n}")
        through_api.append(time.perf_counter() - begin)
    calls = {
        k: v / samples for k, v in counter.calls.items() if not k.startswith(("lambda.", "dynamodbstreams."))
    }
    session = boto3.session.Session()
    dynamodb, sfn = session.client("dynamodb"), session.client("stepfunctions")
    floor_machine = sfn.create_state_machine(
        name="bench-floor",
        definition=json.dumps({"StartAt": "End", "States": {"End": {"Type": "Succeed"}}}),
        roleArn=f"arn:aws:iam::{bp.LOCAL_ACCOUNT}:role/imagegen-local",
    )["stateMachineArn"]
    floor = []
    with counter.own():
        for n in range(samples):
            begin = time.perf_counter()
            dynamodb.get_item(
                TableName=bp.API_KEYS_TABLE.name, Key={"key_hash": {"S": hash_key(stack.outputs["ApiKey"])}}
            )
            dynamodb.put_item(
                TableName=bp.JOBS_TABLE.name,
                Item={"job_id": {"S": f"bench-floor-{n}-{time.time_ns()}"}, "status": {"S": "QUEUED"}},
                ConditionExpression="attribute_not_exists(job_id)",
            )
            sfn.start_execution(stateMachineArn=floor_machine, name=f"floor-{n}-{time.time_ns()}", input="{}")
            floor.append(time.perf_counter() - begin)
    api, least = statistics.median(through_api), statistics.median(floor)
    return {"median_s": api, "floor_median_s": least, "ratio": api / least, "aws_calls_per_submit": calls}


# -- cold imports ------------------------------------------------------------------------------------


def import_ratios(pairs: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Each handler's cold import against `import boto3`: fresh interpreters, alternating,
    medians of `pairs` pairs, from the dev environment."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("IMAGEGEN_", "AWS_"))},
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "functions"), str(REPO_ROOT / "infra")]),
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "imagegen",
        "POWERTOOLS_METRICS_NAMESPACE": "imagegen",
    }
    baseline: list[float] = []
    results: dict[str, Any] = {}
    for name, module in HANDLERS.items():
        times: list[float] = []
        for _ in range(pairs):
            baseline.append(_import_seconds("boto3", env))
            times.append(_import_seconds(module, env))
        results[name] = statistics.median(times)
        log(f"  import {module}: {results[name] * 1000:.0f} ms")
    boto3_median = statistics.median(baseline)
    return {
        "boto3_median_s": boto3_median,
        "handlers_median_s": results,
        "ratios": {name: seconds / boto3_median for name, seconds in results.items()},
    }


def _import_seconds(module: str, env: dict[str, str]) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    done = subprocess.run(  # noqa: S603 (our own interpreter, our own code)
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


# -- finalize of a large job -------------------------------------------------------------------------


def finalize_measure(images: int, megabytes: int) -> dict[str, Any]:
    """In a subprocess of its own (`--finalize`): a moto server in another process, an image
    server here, the workflow's finalize on a job of `images` images of `megabytes` each."""
    from imagegen_local.stack import free_port

    port = free_port()
    moto = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "moto.server", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "BENCH_IMAGES": str(images)}
        env.update(
            {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )
        env["BENCH_MEGABYTES"] = str(megabytes)
        done = subprocess.run(
            [sys.executable, "-m", "imagegen_local.bench", "--finalize-worker"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"finalize measurement failed: {done.stderr[-2000:]}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        moto.terminate()
        moto.wait(timeout=30)


def _finalize_worker() -> dict[str, Any]:
    import http.server
    import socketserver

    import boto3
    import httpx

    from imagegen.jobs import JobStore
    from imagegen.lifecycle import new_job
    from imagegen.models import GenerateRequest, JobStatus, UpstreamTask
    from imagegen.settings import PollSchedule, Settings
    from imagegen.storage import DOWNLOAD_TIMEOUT, ResultStore
    from imagegen.workflow import JobWorkflow, StepState

    images, size = int(os.environ["BENCH_IMAGES"]), int(os.environ["BENCH_MEGABYTES"]) * KB * KB
    payload = os.urandom(size)

    class Images(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            view = memoryview(payload)
            for start in range(0, size, 256 * KB):
                self.wfile.write(view[start : start + 256 * KB])

        def log_message(self, *args: Any) -> None:
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    for _ in range(100):  # moto's server takes a moment to listen
        try:
            boto3.client("s3").list_buckets()
            break
        except Exception:
            time.sleep(0.2)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bench-results")
    dynamodb = boto3.resource("dynamodb")
    dynamodb.create_table(
        TableName="bench-jobs",
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    jobs = JobStore("bench-jobs", resource=dynamodb)
    results = ResultStore(
        "bench-results", s3, httpx.Client(timeout=DOWNLOAD_TIMEOUT), allow_loopback_urls=True
    )
    settings = Settings(
        jobs_table="bench-jobs", api_keys_table="k", results_bucket="bench-results", events_topic_arn="t"
    )
    flow = JobWorkflow(jobs, lambda name: None, results, PollSchedule())  # type: ignore[arg-type, return-value]

    def job_of(count: int) -> str:
        job = new_job(GenerateRequest(prompt="bench", model="gpt-image-1.5"), "bench", settings)
        job.status = JobStatus.PROCESSING
        urls = [f"{base}/{n}.png" for n in range(count)]
        job.upstream_tasks = [
            UpstreamTask(slot=0, task_id="t", status=JobStatus.COMPLETED, progress=100, image_urls=urls)
        ]
        jobs.create(job)
        return job.job_id

    flow.finalize(StepState(jobId=job_of(1), next="finalize"))  # warm: clients, threads, imports
    singles = []
    for _ in range(3):
        job_id = job_of(1)
        begin = time.perf_counter()
        flow.finalize(StepState(jobId=job_id, next="finalize"))
        singles.append(time.perf_counter() - begin)
    baseline = _peak_rss()
    job_id = job_of(images)
    begin = time.perf_counter()
    flow.finalize(StepState(jobId=job_id, next="finalize"))
    elapsed = time.perf_counter() - begin
    growth = _peak_rss() - baseline
    assert jobs.get(job_id).status is JobStatus.COMPLETED
    single = min(singles)
    return {
        "images": images,
        "megabytes_each": size // (KB * KB),
        "seconds": elapsed,
        "largest_single_copy_s": single,
        "time_ratio": elapsed / single,
        "peak_rss_growth_mb": growth / (KB * KB),
    }


def _peak_rss() -> int:
    """This process's peak resident set (VmHWM), bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * KB
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KB


# -- cost, quotas, the table -------------------------------------------------------------------------


def cost_per_thousand(run: dict[str, Any], prices: dict[str, Any]) -> dict[str, float]:
    price = {k: v["usd"] for k, v in prices["prices"].items()}
    calls = run["aws_requests"]

    def count(*names: str) -> float:
        return sum(v for k, v in calls.items() if any(k == n or k.startswith(n + ".") for n in names))

    s3_put = count(
        "s3.PutObject",
        "s3.CreateMultipartUpload",
        "s3.UploadPart",
        "s3.CompleteMultipartUpload",
        "s3.CopyObject",
        "s3.ListObjectsV2",
    )
    s3_get = count("s3.GetObject", "s3.HeadObject")
    sqs = sum(v for k, v in calls.items() if k.startswith("sqs.") and ("Send" in k))
    parts = {
        "stepfunctions": run["state_transitions"] * price["stepfunctions_standard_per_transition"],
        "lambda": run["lambda_invocations"] * price["lambda_per_request"]
        + run["lambda_gb_seconds"] * price["lambda_arm64_per_gb_second"],
        "dynamodb": run["dynamodb_read_units"] * price["dynamodb_per_read_unit"]
        + run["dynamodb_write_units"] * price["dynamodb_per_write_unit"],
        "s3": s3_put * price["s3_per_put_copy_post_list"] + s3_get * price["s3_per_get_head"],
        "sns": count("sns.Publish", "sns.PublishBatch") * price["sns_per_publish"],
        "eventbridge": count("events.PutEvents") * price["eventbridge_per_event"],
        "sqs": sqs * price["sqs_per_request"],
        "secretsmanager": count("secretsmanager") * price["secretsmanager_per_call"],
        "apigateway": 1 * price["apigateway_rest_per_request"],  # the submit
    }
    return {k: v * 1000 for k, v in parts.items()}


def throughput(run: dict[str, Any], prices: dict[str, Any], api_stage_limit: float) -> dict[str, float]:
    """Jobs/s each quota allows, from the per-job counts; the smallest binds first."""
    quota = {k: v["value"] for k, v in prices["quotas"].items()}
    calls = run["aws_requests"]
    seconds = run["lambda_seconds"]  # concurrency = jobs/s x busy seconds per job
    limits = {
        "Step Functions state transitions": quota["stepfunctions_state_transitions_per_second"]
        / max(run["state_transitions"], 1e-9),
        "Step Functions StartExecution": quota["stepfunctions_start_execution_per_second"],
        "Lambda concurrency": quota["lambda_concurrent_executions"] / max(seconds, 1e-9),
        "API Gateway (account)": quota["apigateway_account_requests_per_second"],
        "DynamoDB table writes": quota["dynamodb_table_write_units_per_second"]
        / max(run["dynamodb_write_units"], 1e-9),
        "DynamoDB table reads": quota["dynamodb_table_read_units_per_second"]
        / max(run["dynamodb_read_units"], 1e-9),
        "SNS Publish": quota["sns_publish_per_second"] / max(calls.get("sns.Publish", 0), 1e-9),
        "EventBridge PutEvents": quota["eventbridge_put_events_per_second"]
        / max(calls.get("events.PutEvents", 0), 1e-9),
        # Our own settings, which bind before AWS's quotas do:
        "ours: API stage throttle (cdk.json)": api_stage_limit,
        # The open-jobs index has one partition key value: every job enters and leaves it.
        "ours: open-jobs index partition": quota["dynamodb_partition_write_units_per_second"] / 2,
    }
    return limits


def api_stage_limit() -> float:
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return float(context.get("apiThrottleRateLimit") or math.inf)


def table(results: dict[str, Any]) -> str:
    runs = results["configurations"]
    names = list(runs)
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fmt: Callable[[dict[str, Any]], str]) -> None:
        rows.append((label, [fmt(runs[n]) for n in names]))

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} s"

    row("jobs (completed)", lambda r: f"{r['jobs']} ({r['completed']})")
    row("lag mean / p95", lambda r: f"{seconds(r['lag_mean_s'])} / {seconds(r['lag_p95_s'])}")
    row(
        "upstream calls (+ downloads)",
        lambda r: f"{r['upstream_calls']:.2f} (+{r['upstream_downloads']:.2f})",
    )
    row("state transitions", lambda r: f"{r['state_transitions']:.2f}")
    row(
        "Lambda invocations / GB-s", lambda r: f"{r['lambda_invocations']:.2f} / {r['lambda_gb_seconds']:.4f}"
    )
    row("DynamoDB RRU / WRU", lambda r: f"{r['dynamodb_read_units']:.2f} / {r['dynamodb_write_units']:.2f}")
    row(
        "DynamoDB GetItem / PutItem",
        lambda r: (
            f"{r['aws_requests'].get('dynamodb.GetItem', 0):.2f} / "
            f"{r['aws_requests'].get('dynamodb.PutItem', 0):.2f}"
        ),
    )
    row("S3 requests", lambda r: f"{sum(v for k, v in r['aws_requests'].items() if k.startswith('s3.')):.2f}")
    row(
        "SNS / EventBridge / SQS sends",
        lambda r: "{:.2f} / {:.2f} / {:.2f}".format(
            r["aws_requests"].get("sns.Publish", 0),
            r["aws_requests"].get("events.PutEvents", 0),
            sum(v for k, v in r["aws_requests"].items() if k.startswith("sqs.") and "Send" in k),
        ),
    )
    row(
        "AWS cost per 1,000 jobs",
        lambda r: f"${sum(r['cost_per_1000'].values()):.3f} ({_top(r['cost_per_1000'])})",
    )
    row("jobs/s before the first quota", lambda r: _first_quota(r["jobs_per_second"], ours=False))
    row("jobs/s before our own limits", lambda r: _first_quota(r["jobs_per_second"], ours=True))
    width = max(len(label) for label, _ in rows)
    columns = [max(len(n), *(len(values[i]) for _, values in rows)) for i, n in enumerate(names)]
    lines = [f"{'per job':<{width}}  " + "  ".join(f"{n:<{w}}" for n, w in zip(names, columns, strict=True))]
    lines.append("-" * len(lines[0]))
    lines += [
        f"{label:<{width}}  " + "  ".join(f"{v:<{w}}" for v, w in zip(values, columns, strict=True))
        for label, values in rows
    ]
    extra = []
    imports = results.get("imports")
    if imports:
        ratios = ", ".join(f"{k} {v:.2f}x" for k, v in imports["ratios"].items())
        extra.append(f"cold import / import boto3 ({imports['boto3_median_s'] * 1000:.0f} ms): {ratios}")
    final = results.get("finalize")
    if final:
        extra.append(
            f"finalize {final['images']} x {final['megabytes_each']} MB: {final['seconds']:.2f} s = "
            f"{final['time_ratio']:.2f}x the largest single copy ({final['largest_single_copy_s']:.2f} s); "
            f"peak RSS growth {final['peak_rss_growth_mb']:.0f} MB"
        )
    submit = runs.get("default", {}).get("submit")
    if submit:
        extra.append(
            f"submit path: median {submit['median_s'] * 1000:.0f} ms = {submit['ratio']:.2f}x its floor "
            f"({submit['floor_median_s'] * 1000:.0f} ms: get key, put job, start execution)"
        )
    return "\n".join([*lines, "", *extra])


def _top(parts: dict[str, float]) -> str:
    total = sum(parts.values()) or 1.0
    name, value = max(parts.items(), key=lambda kv: kv[1])
    return f"{value / total:.0%} {name}"


def _first_quota(limits: dict[str, float], ours: bool) -> str:
    chosen = {k: v for k, v in limits.items() if k.startswith("ours: ") == ours}
    name, value = min(chosen.items(), key=lambda kv: kv[1])
    return f"{value:,.0f} ({name.removeprefix('ours: ')})"


# -- the command ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m imagegen_local.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=40, help="single-image jobs per configuration (>= 30)")
    parser.add_argument("--spread", type=float, default=0.5, help="seconds between submits")
    parser.add_argument("--latency", default=SEEDS_LATENCY, help="simulator render time 'min,max' seconds")
    parser.add_argument("--pairs", type=int, default=10, help="alternating import pairs per handler")
    parser.add_argument("--finalize-images", type=int, default=10)
    parser.add_argument("--finalize-mb", type=int, default=20)
    parser.add_argument("--configurations", default="naive,default")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--finalize-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.finalize_worker:
        print(json.dumps(_finalize_worker()))
        return 0
    workload = Workload(
        jobs=args.jobs, spread=args.spread, latency=args.latency, submit_samples=min(20, args.jobs)
    )
    if args.worker:
        _quiet_logs()
        result = run_configuration(args.worker, workload, log=lambda m: print(m, file=sys.stderr, flush=True))
        print(json.dumps(result, default=str))
        return 0
    return _orchestrate(args, workload)


def _orchestrate(args: argparse.Namespace, workload: Workload) -> int:
    SCRATCH.mkdir(exist_ok=True)
    prices = json.loads(PRICES.read_text())
    say = lambda m: print(f"[bench] {m}", flush=True)  # noqa: E731
    runs: dict[str, Any] = {}
    for name in [n.strip() for n in args.configurations.split(",") if n.strip()]:
        say(f"configuration {name}: local stack + simulator ({workload.latency} s), {workload.jobs} jobs ...")
        log_file = SCRATCH / f"{name}.log"
        with log_file.open("w") as log:
            done = subprocess.run(  # noqa: S603
                [sys.executable, "-m", "imagegen_local.bench", "--worker", name, "--jobs", str(workload.jobs),
                 "--spread", str(workload.spread), "--latency", workload.latency],
                cwd=REPO_ROOT, env=_clean_env(), stdout=subprocess.PIPE, stderr=log, text=True, check=False,
            )  # fmt: skip
        if done.returncode != 0:
            say(f"configuration {name} failed; see {log_file}")
            return 1
        run = json.loads(done.stdout.strip().splitlines()[-1])
        run["cost_per_1000"] = cost_per_thousand(run, prices)
        run["jobs_per_second"] = throughput(run, prices, api_stage_limit())
        runs[name] = run
    say(f"cold imports ({args.pairs} alternating pairs per handler) ...")
    imports = import_ratios(args.pairs, say)
    say(f"finalize of {args.finalize_images} x {args.finalize_mb} MB ...")
    final = finalize_measure(args.finalize_images, args.finalize_mb)
    results = {
        "generated": datetime.now().astimezone().isoformat(timespec="seconds"),
        "workload": {"jobs": workload.jobs, "spread_s": workload.spread, "latency_s": workload.latency},
        "prices": {"file": str(PRICES.relative_to(REPO_ROOT)), "date": prices["date"]},
        "configurations": runs,
        "imports": imports,
        "finalize": final,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(table(results))
    print(f"\nwritten to {args.out}")
    return 0


def _clean_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("IMAGEGEN_", "AWS_", "MOTO_", "POWERTOOLS_"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "functions"), str(REPO_ROOT / "infra")])
    return env


def _quiet_logs() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    for chatty in ("botocore", "httpx", "werkzeug", "imagegen", "aws_lambda_powertools"):
        logging.getLogger(chatty).setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
