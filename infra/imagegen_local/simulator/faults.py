"""Deciding, per call and per task, whether the simulated upstream misbehaves."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Literal

from .config import HANG, SimulatorConfig

CallKind = Literal["create", "poll"]
Outcome = Literal["succeed", "fail", "never"]

_SERVER_ERRORS = (500, 502, 503)


@dataclass(frozen=True)
class ApiFault:
    """Either an error status to answer with, or a delay before the normal answer."""

    status: int | None = None
    hang_seconds: float = 0.0


class FaultInjector:
    """Owns the simulator's random source; the config is passed in live so tests can mutate it."""

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)
        # Handler threads share the rng and pop the scripted lists; keep both consistent.
        self._lock = threading.Lock()

    def api_fault(self, config: SimulatorConfig, kind: CallKind) -> ApiFault | None:
        """Scripted failures win; otherwise one roll is split between the probabilistic knobs."""
        scripted = config.create_failures if kind == "create" else config.poll_failures
        with self._lock:
            if scripted:
                code = scripted.pop(0)
                return ApiFault(hang_seconds=config.hang_seconds) if code == HANG else ApiFault(status=code)
            roll = self._rng.random()
            if roll < config.timeout_rate:
                return ApiFault(hang_seconds=config.hang_seconds)
            roll -= config.timeout_rate
            if roll < config.rate_limit_rate:
                return ApiFault(status=429)
            roll -= config.rate_limit_rate
            if roll < config.error_rate:
                return ApiFault(status=self._rng.choice(_SERVER_ERRORS))
        return None

    def task_outcome(self, config: SimulatorConfig) -> Outcome:
        if config.task_outcome == "fail":
            return "fail"
        if config.task_outcome == "never":
            return "never"
        with self._lock:
            roll = self._rng.random()
        if roll < config.task_failure_rate:
            return "fail"
        if roll < config.task_failure_rate + config.never_finish_rate:
            return "never"
        return "succeed"

    def latency(self, config: SimulatorConfig) -> float:
        with self._lock:
            return self._rng.uniform(*config.latency)
