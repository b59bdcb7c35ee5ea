"""`make bench` (python -m imagegen_local.bench) end to end on a tiny workload: it runs a local
stack of its own in its own process, writes the JSON, and what it writes is counted (every
job accounted for, upstream calls and transitions from the records). No timing assertions:
the benchmark reports figures, it does not judge them. Plus the DynamoDB unit rules the
counter applies, on items of known size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from imagegen_local.bench import REPO_ROOT, AwsCounter, _item_size


def test_bench_runs_end_to_end_and_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEGEN_", "AWS_", "MOTO_"))}
    args = ["--jobs", "2", "--spread", "0.2", "--latency", "0.2,0.5", "--pairs", "1"]
    args += ["--finalize-images", "2", "--finalize-mb", "1", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "imagegen_local.bench", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results["configurations"]) == {"naive", "default"}
    for run in results["configurations"].values():
        assert (run["jobs"], run["completed"]) == (2, 2)
        # A job creates one task and polls it at least once; it enters at least 5 states.
        assert run["upstream_calls"] >= 2 and run["state_transitions"] >= 5
        assert run["aws_requests"]["stepfunctions.StartExecution"] == 1
        assert run["lag_mean_s"] is not None and sum(run["cost_per_1000"].values()) > 0
    assert set(results["imports"]["ratios"]) >= {"api", "workflow"}
    assert results["finalize"]["images"] == 2
    assert "lag mean / p95" in done.stdout and "AWS cost per 1,000 jobs" in done.stdout


def _put(counter: AwsCounter, item: dict) -> None:
    counter._dynamodb_units("PutItem", {"TableName": "t", "Item": item}, {})


def test_write_units_follow_item_size_and_the_open_jobs_index() -> None:
    counter = AwsCounter("open_marker", "sweep_after")
    small = {"job_id": {"S": "a"}, "prompt": {"S": "x" * 100}}
    _put(counter, small)
    assert counter.write_units == 1  # under 1 KB, not in the index
    big = {"job_id": {"S": "b"}, "prompt": {"S": "x" * 2500}}
    assert _item_size(big) > 2 * 1024
    _put(counter, big)
    assert counter.write_units == 1 + 3
    counter.write_units = 0
    indexed = {**small, "job_id": {"S": "c"}, "open_marker": {"S": "open"}, "sweep_after": {"S": "t"}}
    _put(counter, indexed)
    assert counter.write_units == 2  # the item and its index entry
    _put(counter, {**small, "job_id": {"S": "c"}})
    assert counter.write_units == 4  # leaving the index deletes its entry: one more write


def test_reads_are_halved_when_eventually_consistent() -> None:
    counter = AwsCounter("open_marker", "sweep_after")
    item = {"job_id": {"S": "a"}, "prompt": {"S": "x" * 5000}}
    counter._dynamodb_units("GetItem", {"TableName": "t", "ConsistentRead": True}, {"Item": item})
    counter._dynamodb_units("GetItem", {"TableName": "t"}, {"Item": item})
    assert counter.read_units == 2 + 1
