"""A small `make chaos` (python -m imagegen_local.chaos): its own local stack in its own process,
an upstream simulator here with every fault knob firing, and the run's own checks must all
pass. The full run is not a CI test (it takes minutes); this one keeps its checks honest.

It uses no fixture of the test session's stack and leaves this process's environment alone."""

from __future__ import annotations

import dataclasses
import os

from imagegen_local.chaos import ChaosOptions, run_on_own_stack, simulator_config, stack_environment

SMALL = ChaosOptions(
    jobs=12,  # one more than GUARANTEED_FAULTS: every knob fires, plus random faults
    burst=12,
    concurrency=4,
    burst_concurrency=12,
    latency="0.05,0.3",
    # The never-finishing task's job fails at its deadline: short, yet long enough that on a busy
    # 2-core CI machine every scripted job reaches the step its fault is for (poll timeouts
    # went missing at 10 s while the rest of the suite ran beside it).
    deadline=25,
    grace=15.0,
    hang_seconds=1.5,
    upstream_timeout=0.5,
    seed=5,
)


def test_a_small_chaos_run_passes_every_check(tmp_path):
    environment_before = dict(os.environ)

    report = run_on_own_stack(SMALL, tmp_path / "stack.log", say=lambda message: None)

    print(report.table())
    checks = {row.check for row in report.rows if row.ok is not None}
    assert "every fault kind injected" in checks and len(checks) >= 10
    assert report.passed, report.table()
    assert dict(os.environ) == environment_before


def test_the_options_reach_the_simulator_and_the_functions():
    config = simulator_config(dataclasses.replace(SMALL, faults="error_rate=0.2,never_finish_rate=0.1"))
    env = stack_environment(SMALL)

    assert (config.error_rate, config.never_finish_rate, config.hang_seconds) == (0.2, 0.1, 1.5)
    assert config.latency == (0.05, 0.3)
    assert env["IMAGEGEN_JOB_DEADLINE_SECONDS"] == "25" and env["IMAGEGEN_UPSTREAM_TIMEOUT_SECONDS"] == "0.5"
