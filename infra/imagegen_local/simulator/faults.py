"""Deciding, per call and per task, whether the simulated upstream misbehaves."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from .config import BREAK, HANG, MALFORMED, MALFORMED_KINDS, FaultScript, SimulatorConfig

CallKind = Literal["create", "poll", "download"]
Outcome = Literal["succeed", "fail", "never"]

_SERVER_ERRORS = (500, 502, 503)


@dataclass(frozen=True)
class ApiFault:
    """One of: an error status to answer with, a delay before the normal answer, a normal
    piece of work answered with a malformed body, or a download cut off halfway."""

    status: int | None = None
    hang_seconds: float = 0.0
    malformed: bool = False
    malformed_kind: int | None = None  # one of MALFORMED_KINDS; None: drawn when answering
    broken: bool = False

    @property
    def label(self) -> str:
        if self.status is not None:
            return str(self.status)
        if self.malformed:
            return "malformed"
        return "break" if self.broken else "timeout"


class FaultInjector:
    """Owns the simulator's random source; the config is passed in live so tests can mutate it."""

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)
        # Handler threads share the rng and pop the scripted lists; keep both consistent.
        self._lock = threading.Lock()
        # Faults handed out so far, by kind ("create 503", "poll timeout", "task never"...).
        self.counts: Counter[str] = Counter()

    def api_fault(
        self, config: SimulatorConfig, kind: CallKind, script: FaultScript | None = None
    ) -> ApiFault | None:
        with self._lock:
            fault = self._api_fault(config, kind, script)
            if fault is not None:
                self.counts[f"{kind} {fault.label}"] += 1
            return fault

    def _api_fault(
        self, config: SimulatorConfig, kind: CallKind, script: FaultScript | None
    ) -> ApiFault | None:
        """The job's own script first, then the global script, then one roll split between
        the probabilistic knobs."""
        hang = config.hang_seconds
        if script is not None:
            hang = script.hang_seconds if script.hang_seconds is not None else hang
            scripted = _scripted_list(script, kind)
            if scripted:
                return _scripted_fault(scripted.pop(0), hang)
        scripted = _scripted_list(config, kind)
        if scripted:
            return _scripted_fault(scripted.pop(0), hang)
        roll = self._rng.random()
        if kind == "download":
            return ApiFault(broken=True) if roll < config.download_failure_rate else None
        if roll < config.timeout_rate:
            return ApiFault(hang_seconds=hang)
        roll -= config.timeout_rate
        if roll < config.rate_limit_rate:
            return ApiFault(status=429)
        roll -= config.rate_limit_rate
        if roll < config.error_rate:
            return ApiFault(status=self._rng.choice(_SERVER_ERRORS))
        roll -= config.error_rate
        if roll < config.malformed_rate:
            return ApiFault(malformed=True)
        return None

    def task_outcome(self, config: SimulatorConfig, script: FaultScript | None = None) -> Outcome:
        outcome = self._task_outcome(config, script)
        if outcome != "succeed":
            with self._lock:
                self.counts[f"task {outcome}"] += 1
        return outcome

    def _task_outcome(self, config: SimulatorConfig, script: FaultScript | None) -> Outcome:
        forced = script.task_outcome if script is not None and script.task_outcome else config.task_outcome
        if forced == "fail":
            return "fail"
        if forced == "never":
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

    def pick(self, count: int) -> int:
        """A number below `count` from the seeded source (which malformed body to send)."""
        with self._lock:
            return self._rng.randrange(count)


def fail_reason(config: SimulatorConfig, script: FaultScript | None) -> str:
    return script.fail_reason if script is not None and script.fail_reason else config.fail_reason


def _scripted_list(source: SimulatorConfig | FaultScript, kind: CallKind) -> list[int]:
    if kind == "create":
        return source.create_failures
    if kind == "poll":
        return source.poll_failures
    return source.download_failures


def _scripted_fault(code: int, hang_seconds: float) -> ApiFault:
    if code == HANG:
        return ApiFault(hang_seconds=hang_seconds)
    if code == MALFORMED:
        return ApiFault(malformed=True)
    if code in MALFORMED_KINDS:
        return ApiFault(malformed=True, malformed_kind=code)
    if code == BREAK:
        return ApiFault(broken=True)
    return ApiFault(status=code)
