"""Simulator settings: render latency, auth and fault knobs, readable from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

TaskOutcome = Literal["fail", "never"]

# Scripted failure codes besides HTTP statuses. HANG: answer normally, but only after
# hang_seconds (a client read timeout, deterministically). MALFORMED: do the work, then answer
# 200 with a body that is not what the protocol promises (cut JSON, an HTML page, a wrong shape).
# BREAK (downloads): send the headers and half the file, then drop the connection. CUT_BODY,
# HTML_PAGE and WRONG_SHAPE: MALFORMED of that one kind (MALFORMED draws the kind at random).
HANG = 0
MALFORMED = -1
BREAK = -2
CUT_BODY = -3
HTML_PAGE = -4
WRONG_SHAPE = -5
MALFORMED_KINDS = (CUT_BODY, HTML_PAGE, WRONG_SHAPE)

# Rates of API calls (create, status) answered with a fault; split from one roll, so their sum
# is the share of faulty answers.
API_RATE_FIELDS = ("error_rate", "rate_limit_rate", "timeout_rate", "malformed_rate")
RATE_FIELDS = (
    *API_RATE_FIELDS,
    "task_failure_rate",
    "never_finish_rate",
    "download_failure_rate",
)
_FAULT_ENV_KEYS = (*RATE_FIELDS, "hang_seconds", "retry_after_seconds")


@dataclass
class SimulatorConfig:
    """How the simulated upstream behaves. Fault fields may be changed while it runs."""

    latency: tuple[float, float] = (3.0, 10.0)  # seconds a task takes, drawn uniformly
    api_key: str | None = None  # None: any non-empty key is accepted
    seed: int | None = None  # seeds the simulator's random.Random (faults, latency)
    error_rate: float = 0.0  # answer 500/502/503 to an API call
    rate_limit_rate: float = 0.0  # answer 429 with Retry-After: retry_after_seconds
    timeout_rate: float = 0.0  # answer only after hang_seconds
    malformed_rate: float = 0.0  # do the work, answer 200 with a malformed body
    task_failure_rate: float = 0.0  # task ends FAILED with fail_reason
    never_finish_rate: float = 0.0  # task stays in progress forever
    download_failure_rate: float = 0.0  # a result file download breaks off midway
    hang_seconds: float = 30.0
    retry_after_seconds: float = 1.0
    # Global scripts: they hit whichever job calls next. Tests use UpstreamSimulator.script()
    # instead, which scopes them to one job; these stay for chaos runs and the simulator's tests.
    create_failures: list[int] = field(default_factory=list)  # popped one per create call
    poll_failures: list[int] = field(default_factory=list)  # popped one per status call
    download_failures: list[int] = field(default_factory=list)  # popped one per file download
    task_outcome: TaskOutcome | None = None  # forces the outcome of every new task
    fail_reason: str = "content policy violation"
    # apiframe webhooks: how often a task's progress is looked at for "progress" events.
    webhook_progress_interval: float = 0.5

    def __post_init__(self) -> None:
        self.latency = _checked_latency(tuple(self.latency))
        for name in RATE_FIELDS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.task_outcome not in (None, "fail", "never"):
            raise ValueError(f"task_outcome must be 'fail', 'never' or None, got {self.task_outcome!r}")
        if self.hang_seconds < 0:
            raise ValueError("hang_seconds must not be negative")
        if self.retry_after_seconds < 0:
            raise ValueError("retry_after_seconds must not be negative")
        if sum(getattr(self, name) for name in API_RATE_FIELDS) > 1.0:
            raise ValueError(f"{' + '.join(API_RATE_FIELDS)} must not exceed 1")
        if self.task_failure_rate + self.never_finish_rate > 1.0:
            raise ValueError("task_failure_rate + never_finish_rate must not exceed 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SimulatorConfig:
        """Build a config from IMAGEGEN_SIM_* variables; unset or empty ones keep defaults.

        IMAGEGEN_SIM_LATENCY="min,max" (or one number), IMAGEGEN_SIM_FAULTS="error_rate=0.1,...",
        and, as extras, IMAGEGEN_SIM_API_KEY and IMAGEGEN_SIM_SEED.
        """
        overrides: dict[str, object] = {}
        if latency := environ.get("IMAGEGEN_SIM_LATENCY", "").strip():
            overrides["latency"] = parse_latency(latency)
        if faults := environ.get("IMAGEGEN_SIM_FAULTS", "").strip():
            overrides.update(parse_faults(faults))
        if api_key := environ.get("IMAGEGEN_SIM_API_KEY", "").strip():
            overrides["api_key"] = api_key
        if seed := environ.get("IMAGEGEN_SIM_SEED", "").strip():
            overrides["seed"] = int(seed)
        return cls(**overrides)  # type: ignore[arg-type]


@dataclass
class FaultScript:
    """Faults for one job only. A create call belongs to the script when `match` occurs in its
    body (a marker in the prompt) or its Idempotency-Key (apiframe's derives from our job id);
    status calls and file downloads belong to the script of the task they are about. The lists
    are popped as they are used, so a test can check that every scripted fault was hit."""

    match: str
    create_failures: list[int] = field(default_factory=list)
    poll_failures: list[int] = field(default_factory=list)
    download_failures: list[int] = field(default_factory=list)
    task_outcome: TaskOutcome | None = None
    fail_reason: str | None = None
    hang_seconds: float | None = None

    def __post_init__(self) -> None:
        if not self.match:
            raise ValueError("a script needs a non-empty match, or it would apply to every job")
        if self.task_outcome not in (None, "fail", "never"):
            raise ValueError(f"task_outcome must be 'fail', 'never' or None, got {self.task_outcome!r}")

    def applies_to(self, body: bytes, idempotency_key: str | None) -> bool:
        return self.match.encode() in body or (idempotency_key is not None and self.match in idempotency_key)


def parse_latency(text: str) -> tuple[float, float]:
    """'3,10' -> (3.0, 10.0); '2' -> (2.0, 2.0)."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ValueError(f"latency must be 'min,max' or one number, got {text!r}")
    return _checked_latency((float(parts[0]), float(parts[1])))


def parse_faults(text: str) -> dict[str, float]:
    """'error_rate=0.1,rate_limit_rate=0.05' -> {'error_rate': 0.1, ...}; unknown keys fail loudly."""
    faults: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in _FAULT_ENV_KEYS:
            raise ValueError(f"bad fault setting {item!r}; expected one of {', '.join(_FAULT_ENV_KEYS)}")
        faults[key] = float(value)
    return faults


def _checked_latency(latency: tuple[float, ...]) -> tuple[float, float]:
    if len(latency) != 2 or not 0 <= latency[0] <= latency[1]:
        raise ValueError(f"latency must be (min, max) with 0 <= min <= max, got {latency}")
    return (float(latency[0]), float(latency[1]))
