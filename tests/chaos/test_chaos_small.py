"""A small `make chaos` (python -m imagegen_local.chaos) against the test session's stack: every
fault knob fires, and the run's own checks must all pass. The full run is not a CI test (it
takes minutes); this one keeps its checks honest on every change."""

from __future__ import annotations

import dataclasses

from imagegen_local.chaos import ChaosOptions, run, simulator_config, stack_environment, target_for

SMALL = ChaosOptions(
    jobs=12,  # one more than GUARANTEED_FAULTS: every knob fires, plus random faults
    burst=12,
    concurrency=4,
    burst_concurrency=12,
    latency="0.05,0.3",
    deadline=12,  # the never-finishing task's job fails at its deadline: keep it short
    grace=15.0,
    hang_seconds=1.5,
    upstream_timeout=0.5,
    seed=5,
)
# The knobs a chaos run sets on the simulator (the `simulator` fixture puts them back after).
KNOBS = (
    "latency",
    "hang_seconds",
    "retry_after_seconds",
    "error_rate",
    "rate_limit_rate",
    "timeout_rate",
    "malformed_rate",
    "task_failure_rate",
    "never_finish_rate",
    "download_failure_rate",
)


def test_a_small_chaos_run_passes_every_check(outputs, simulator, reconfigure):
    configured = simulator_config(SMALL)
    for knob in KNOBS:
        setattr(simulator.config, knob, getattr(configured, knob))
    with reconfigure(**stack_environment(SMALL)):
        report = run(target_for(outputs, simulator, SMALL.provider), SMALL, say=lambda message: None)

    print(report.table())
    checks = {row.check: row for row in report.rows if row.ok is not None}
    assert "every fault kind injected" in checks and len(checks) >= 10
    assert report.passed, report.table()


def test_the_options_reach_the_simulator_and_the_functions():
    config = simulator_config(dataclasses.replace(SMALL, faults="error_rate=0.2,never_finish_rate=0.1"))
    env = stack_environment(SMALL)

    assert (config.error_rate, config.never_finish_rate, config.hang_seconds) == (0.2, 0.1, 1.5)
    assert config.latency == (0.05, 0.3)
    assert env["IMAGEGEN_JOB_DEADLINE_SECONDS"] == "12" and env["IMAGEGEN_UPSTREAM_TIMEOUT_SECONDS"] == "0.5"
